"""Batch replay: the rules that need reads run once per batch, never once per event.

The runner pipelines a batch's writes and sends them in as few round trips as it can; a read
in the middle of a batch costs a round trip. Handlers therefore only record the steps of
variants (their rule inputs) and of products' variant counts; flush() reads what those steps
start from (stored fields, issue ids, counts) in one statement each, replays the steps event by
event in Python, and writes the outcome set-based. The outcome, every ``detected_at`` included,
is exactly what event-at-a-time processing gives, wherever batches happen to end: a rebuild
from the log is compared with the live view."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from pim.domain.ids import entity_id_of
from pim.domain.validation import NO_VARIANTS_MESSAGE, issue_id, variant_issues
from pim.projections.statements import Statements
from pim.projections.validation.counters import IssueCounters, issue_row


def _created(step: tuple[str, Any, bool, Any]) -> bool:
    """A variant step that is a creation: full state, with its product."""
    product_id, data, full, _ = step
    return full and data is not None and bool(product_id)


class BatchReplay(IssueCounters):
    """The batch's variant and variant-count steps, replayed and written by flush()."""

    def __init__(self, table_suffix: str = "") -> None:
        super().__init__(table_suffix)
        self.begin()

    def begin(self) -> None:
        super().begin()
        self._inserts = []
        # (tenant, variant) -> [(product_id, fields | changes | None, is_full_state, ts)]
        self._variant_steps: dict[tuple[str, str], list[tuple[str, Any, bool, Any]]] = {}
        # (tenant, product) -> [(delta, ts)]; delta None = product created (count 0)
        self._count_steps: dict[tuple[str, str], list[tuple[int | None, Any]]] = {}

    def _variant_step(self, event: Any, product_id: str, data: Any, full: bool) -> None:
        key = (event.tenant_id, entity_id_of(event.originator_id))
        self._variant_steps.setdefault(key, []).append((product_id, data, full, event.timestamp))

    def flush(self, cur: Statements) -> None:
        self.write_inserts(cur)
        self._flush_variants(cur)
        self._flush_variant_counts(cur)
        self._flush_counts(cur)
        self.begin()

    def _flush_variants(self, cur: Statements) -> None:
        if not self._variant_steps:
            return
        # A variant created in this batch starts from nothing: no stored fields or issues to
        # read (an import's variants cost no reads at all).
        keys = [key for key, steps in self._variant_steps.items() if not _created(steps[0])]
        base: dict[tuple[str, str], tuple[str, Any]] = {}
        existing: dict[tuple[str, str], set[str]] = {}
        if keys:
            # A read sends the writes queued before it first: it sees them.
            params = ([k[0] for k in keys], [k[1] for k in keys])
            for r in cur.read(
                sql.SQL(
                    "SELECT v.tenant_id, v.id, v.product_id, v.fields FROM {} v"
                    " JOIN unnest(%s::uuid[], %s::uuid[]) AS k(t, i)"
                    " ON v.tenant_id = k.t AND v.id = k.i"
                ).format(self._t("validation_variants")),
                params,
            ):
                base[(str(r[0]), str(r[1]))] = (str(r[2]), r[3])
            for r in cur.read(
                sql.SQL(
                    "SELECT i.tenant_id, i.variant_id, i.id FROM {} i"
                    " JOIN unnest(%s::uuid[], %s::uuid[]) AS k(t, v)"
                    " ON i.tenant_id = k.t AND i.variant_id = k.v"
                ).format(self._t("validation_issues")),
                params,
            ):
                existing.setdefault((str(r[0]), str(r[1])), set()).add(str(r[2]))
        self._replay_variants(cur, base, existing)

    def _replay_variants(
        self,
        cur: Statements,
        base: dict[tuple[str, str], tuple[str, Any]],
        existing: dict[tuple[str, str], set[str]],
    ) -> None:
        """Replay the batch's variant steps over their stored (product, fields) and issue ids;
        write the outcome."""
        upserts: list[dict[str, Any]] = []
        removed: list[dict[str, Any]] = []
        inserts: list[dict[str, Any]] = []
        deletes: list[dict[str, Any]] = []
        for (tenant_id, variant_id), steps in self._variant_steps.items():
            product_id, fields = base.get((tenant_id, variant_id), ("", None))
            before = existing.get((tenant_id, variant_id), set())
            # issue id -> (code, message, detected_at; None when it predates the batch)
            present: dict[str, tuple[str, str, Any]] = {iid: ("", "", None) for iid in before}
            for step_product, data, full, ts in steps:
                product_id = step_product or product_id
                if data is None:
                    fields = None
                elif full:
                    fields = dict(data)
                else:
                    fields = {**(fields or {}), **data}
                desired = {
                    issue_id(product_id, variant_id, code, None, message): (code, message, ts)
                    for code, message in (variant_issues(fields) if fields is not None else [])
                }
                present = {i: v for i, v in present.items() if i in desired}
                for iid, value in desired.items():
                    present.setdefault(iid, value)
            if fields is None:
                removed.append({"tenant_id": tenant_id, "id": variant_id})
            else:
                upserts.append(
                    {
                        "tenant_id": tenant_id,
                        "id": variant_id,
                        "product_id": product_id,
                        "fields": fields,
                    }
                )
            for iid in before - set(present):
                deletes.append({"tenant_id": tenant_id, "id": iid})
            for iid, (code, message, ts) in present.items():
                if ts is not None:
                    inserts.append(
                        issue_row(tenant_id, iid, product_id, variant_id, code, message, ts)
                    )
        self._variant_rows["upsert"].execute(cur, upserts)
        self._variant_rows["delete"].execute(cur, removed)
        self._write_issues(cur, deletes, inserts)

    def _flush_variant_counts(self, cur: Statements) -> None:
        """Replay variant count changes; NO_VARIANTS is there exactly while the count is 0."""
        if not self._count_steps:
            return
        # Products created in this batch start at 0 variants with no issue: no need to ask.
        base: dict[tuple[str, str], tuple[int, bool]] = {
            key: (0, False) for key, steps in self._count_steps.items() if steps[0][0] is None
        }
        keys = [key for key in self._count_steps if key not in base]
        tenants = [k[0] for k in keys]
        ids = [k[1] for k in keys]
        rows = (
            []
            if not keys
            else cur.read(
                sql.SQL(
                    "SELECT p.tenant_id, p.id, p.variant_count,"
                    " EXISTS (SELECT 1 FROM {issues} i WHERE i.tenant_id = p.tenant_id"
                    "         AND i.product_id = p.id AND i.code = 'NO_VARIANTS')"
                    " FROM {products} p JOIN unnest(%s::uuid[], %s::uuid[]) AS k(t, i)"
                    " ON p.tenant_id = k.t AND p.id = k.i"
                ).format(
                    issues=self._t("validation_issues"), products=self._t("validation_products")
                ),
                (tenants, ids),
            )
        )
        base.update({(str(r[0]), str(r[1])): (int(r[2]), bool(r[3])) for r in rows})
        counts: list[dict[str, Any]] = []
        deletes: list[dict[str, Any]] = []
        inserts: list[dict[str, Any]] = []
        for (tenant_id, product_id), steps in self._count_steps.items():
            if (tenant_id, product_id) not in base:
                continue  # deleted in this batch: its issues went with it
            count, had_issue = base[(tenant_id, product_id)]
            since: Any = "before" if had_issue else None
            for delta, ts in steps:
                if delta is None:  # created in this batch, with no variants yet
                    count, since = 0, ts
                    continue
                count += delta
                if count > 0:
                    since = None
                elif since is None:
                    since = ts
            if count != base[(tenant_id, product_id)][0]:
                counts.append({"tenant_id": tenant_id, "id": product_id, "variant_count": count})
            if since == "before":
                continue
            iid = issue_id(product_id, None, "NO_VARIANTS", None, NO_VARIANTS_MESSAGE)
            if had_issue:
                deletes.append({"tenant_id": tenant_id, "id": iid})
            if since is not None:
                inserts.append(
                    issue_row(
                        tenant_id, iid, product_id, None, "NO_VARIANTS", NO_VARIANTS_MESSAGE, since
                    )
                )
        self._set_variant_counts.execute(cur, counts)
        self._write_issues(cur, deletes, inserts)
