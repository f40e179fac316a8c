"""Live validation issues: what keeps a product from being sellable, always current.

The projection keeps the little state its rules need (products' category/template/attributes/
variant count, live category slugs, templates' required attributes, attribute keys) and
reconciles the issues of a *scope* (one product, every product of a template, every product of a
category slug) in a few set-based statements: the desired issues are inserted (deterministic ids,
so an unchanged issue keeps its detected_at) and the stale ones deleted."""

from __future__ import annotations

import functools
import hashlib
import re
import uuid
from typing import Any, ClassVar

from psycopg import sql
from psycopg.types.json import Jsonb

from pim.domain.attribute import Attribute, Template
from pim.domain.category import Category
from pim.domain.ids import entity_id_of
from pim.domain.product import Product
from pim.domain.variant import Variant, is_valid_gtin
from pim.projections.base import EventHandler, Projection, RowsStatement
from pim.projections.statements import Statements

SKU_CONVENTION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

SEVERITY = {
    "MISSING_REQUIRED_ATTRIBUTE": "ERROR",
    "INVALID_SKU": "ERROR",
    "INVALID_BARCODE": "ERROR",
    "UNKNOWN_CATEGORY": "ERROR",
    "MISSING_PRICE": "WARNING",
    "NO_VARIANTS": "WARNING",
}
NO_VARIANTS_MESSAGE = "This product has no variants, so it cannot be sold."
PRODUCT_CODES = ("NO_VARIANTS", "UNKNOWN_CATEGORY", "MISSING_REQUIRED_ATTRIBUTE")


def issue_id(
    product_id: str, variant_id: str | None, code: str, attribute_key: str | None, message: str
) -> str:
    """Deterministic: the same problem keeps its id (and detected_at); computed the same way in
    SQL for product-level issues."""
    text = f"{product_id}|{variant_id or ''}|{code}|{attribute_key or ''}|{message}"
    return str(uuid.UUID(hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()))


def variant_issues(fields: dict[str, Any]) -> list[tuple[str, str]]:
    """(code, message) of one variant's own problems."""
    out: list[tuple[str, str]] = []
    sku = fields.get("sku") or ""
    if not SKU_CONVENTION.match(sku):
        out.append(
            (
                "INVALID_SKU",
                f"SKU '{sku}' breaks the catalog convention: start with a letter or digit, "
                "then only letters, digits, '.', '_' or '-'.",
            )
        )
    barcode = fields.get("barcode")
    if barcode and not is_valid_gtin(barcode):
        out.append(
            (
                "INVALID_BARCODE",
                f"Barcode '{barcode}' is not a valid GTIN-8, -12, -13 or -14 (UPC/EAN): "
                "check its length and check digit.",
            )
        )
    # Rows stored before the view kept only rule inputs hold the whole field map.
    priced = fields["priced"] if "priced" in fields else fields.get("price") is not None
    if not priced:
        out.append(("MISSING_PRICE", f"Variant '{sku}' has no price, so it cannot be sold."))
    return out


def rule_inputs(fields: dict[str, Any]) -> dict[str, Any]:
    """What the variant rules read, and all the view keeps of a variant: a price change that
    keeps a price (a bulk repricing) is then no work at all for this view."""
    return {
        "sku": fields.get("sku"),
        "barcode": fields.get("barcode"),
        "priced": fields.get("price") is not None,
    }


def _created(step: tuple[str, Any, bool, Any]) -> bool:
    """A variant step that is a creation: full state, with its product."""
    product_id, data, full, _ = step
    return full and data is not None and bool(product_id)


def _issue_row(
    tenant_id: str,
    issue: str,
    product_id: str,
    variant_id: str | None,
    code: str,
    message: str,
    detected_at: Any,
) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "id": issue,
        "product_id": product_id,
        "variant_id": variant_id,
        "code": code,
        "severity": SEVERITY[code],
        "message": message,
        "detected_at": detected_at,
    }


class ValidationView(Projection):
    name: ClassVar[str] = "validation"
    table_bases: ClassVar[tuple[str, ...]] = (
        "validation_issues",
        "validation_counts",
        "validation_products",
        "validation_categories",
        "validation_templates",
        "validation_attributes",
        "validation_variants",
    )

    def ddl(self) -> list[str]:
        t = self.table
        return [
            f"""CREATE TABLE IF NOT EXISTS {t("validation_issues")} (
                tenant_id uuid NOT NULL, id uuid NOT NULL, product_id uuid NOT NULL,
                variant_id uuid, code text NOT NULL, severity text NOT NULL,
                message text NOT NULL, attribute_key text, detected_at timestamptz NOT NULL,
                PRIMARY KEY (tenant_id, id))""",
            f"CREATE INDEX IF NOT EXISTS {t('validation_issues')}_order_idx"
            f" ON {t('validation_issues')} (tenant_id, detected_at, id)",
            f"CREATE INDEX IF NOT EXISTS {t('validation_issues')}_product_idx"
            f" ON {t('validation_issues')} (tenant_id, product_id)",
            f"""CREATE TABLE IF NOT EXISTS {t("validation_counts")} (
                tenant_id uuid PRIMARY KEY, issues bigint NOT NULL DEFAULT 0)""",
            f"""CREATE TABLE IF NOT EXISTS {t("validation_products")} (
                tenant_id uuid NOT NULL, id uuid NOT NULL, category text, template_id uuid,
                attributes jsonb NOT NULL, variant_count integer NOT NULL DEFAULT 0,
                PRIMARY KEY (tenant_id, id))""",
            f"CREATE INDEX IF NOT EXISTS {t('validation_products')}_template_idx"
            f" ON {t('validation_products')} (tenant_id, template_id)",
            f"CREATE INDEX IF NOT EXISTS {t('validation_products')}_category_idx"
            f" ON {t('validation_products')} (tenant_id, category)",
            f"""CREATE TABLE IF NOT EXISTS {t("validation_categories")} (
                tenant_id uuid NOT NULL, slug text NOT NULL, id uuid NOT NULL,
                PRIMARY KEY (tenant_id, slug))""",
            f"""CREATE TABLE IF NOT EXISTS {t("validation_templates")} (
                tenant_id uuid NOT NULL, id uuid NOT NULL, name text NOT NULL,
                required_ids uuid[] NOT NULL, PRIMARY KEY (tenant_id, id))""",
            f"""CREATE TABLE IF NOT EXISTS {t("validation_variants")} (
                tenant_id uuid NOT NULL, id uuid NOT NULL, product_id uuid NOT NULL,
                fields jsonb NOT NULL, PRIMARY KEY (tenant_id, id))""",
            f"""CREATE TABLE IF NOT EXISTS {t("validation_attributes")} (
                tenant_id uuid NOT NULL, id uuid NOT NULL, key text NOT NULL,
                PRIMARY KEY (tenant_id, id))""",
        ]

    def _t(self, base: str) -> sql.Identifier:
        return sql.Identifier(self.table(base))

    # -- batching ---------------------------------------------------------------------------
    #
    # Per event, only statements whose results are not needed are sent (the runner pipelines
    # them). What needs reading (variants' rules over their full fields, the NO_VARIANTS
    # count, the issue counters) is replayed once per batch in flush(), event by event, so
    # the outcome (and every detected_at) is exactly what event-at-a-time processing gives,
    # wherever batches happen to end.

    def __init__(self, table_suffix: str = "") -> None:
        super().__init__(table_suffix)
        self.begin()

    def begin(self) -> None:
        self._inserts = []
        self._dirty_tenants: set[str] = set()
        # (tenant, variant) -> [(product_id, fields | changes | None, is_full_state, ts)]
        self._variant_steps: dict[tuple[str, str], list[tuple[str, Any, bool, Any]]] = {}
        # (tenant, product) -> [(delta, ts)]; delta None = product created (count 0)
        self._count_steps: dict[tuple[str, str], list[tuple[int | None, Any]]] = {}

    def _count(self, cur: Statements, tenant_id: str) -> None:
        """This tenant's issue counter may have gone down: a zero left behind is removed at
        the end of the batch."""
        self._dirty_tenants.add(tenant_id)

    def _counted(
        self, change: sql.Composable, sign: int, before: sql.Composable | None = None
    ) -> sql.Composed:
        """``change`` (an INSERT or DELETE of issues ``RETURNING tenant_id``, after the
        queries ``before`` of a WITH list) in one statement with the counters' move: +1 (or
        -1) per row it really inserted (or deleted). Counters follow every change
        incrementally; recounting a tenant's issues would cost as much as it has issues, at
        every batch."""
        return sql.SQL(
            "WITH {before}changed AS ({change}) INSERT INTO {counts} AS c (tenant_id, issues)"
            " SELECT tenant_id, {sign} * count(*) FROM changed GROUP BY tenant_id"
            " ON CONFLICT (tenant_id) DO UPDATE SET issues = c.issues + EXCLUDED.issues"
        ).format(
            before=sql.SQL("{}, ").format(before) if before is not None else sql.SQL(""),
            change=change,
            counts=self._t("validation_counts"),
            sign=sql.Literal(sign),
        )

    def flush(self, cur: Statements) -> None:
        self.write_inserts(cur)
        self._flush_variants(cur)
        self._flush_variant_counts(cur)
        self._flush_counts(cur)
        self.begin()

    def _flush_counts(self, cur: Statements) -> None:
        if not self._dirty_tenants:
            return
        # A zero count is no row, so the table does not depend on batch boundaries.
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE tenant_id = ANY(%s::uuid[]) AND issues = 0").format(
                self._t("validation_counts")
            ),
            (sorted(self._dirty_tenants),),
        )

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
                        _issue_row(tenant_id, iid, product_id, variant_id, code, message, ts)
                    )
        self._variant_rows["upsert"].execute(cur, upserts)
        self._variant_rows["delete"].execute(cur, removed)
        self._write_issues(cur, deletes, inserts)

    @functools.cached_property
    def _variant_rows(self) -> dict[str, RowsStatement]:
        table = self._t("validation_variants")
        return {
            "upsert": RowsStatement(
                sql.SQL(
                    "INSERT INTO {} (tenant_id, id, product_id, fields)"
                    " SELECT tenant_id, id, product_id, fields FROM jsonb_to_recordset(%s::jsonb)"
                    " AS r(tenant_id uuid, id uuid, product_id uuid, fields jsonb)"
                    " ON CONFLICT (tenant_id, id) DO UPDATE SET fields = EXCLUDED.fields"
                ).format(table)
            ),
            "delete": RowsStatement(
                sql.SQL(
                    "DELETE FROM {} AS v USING jsonb_to_recordset(%s::jsonb)"
                    " AS r(tenant_id uuid, id uuid) WHERE v.tenant_id = r.tenant_id AND v.id = r.id"
                ).format(table)
            ),
        }

    @functools.cached_property
    def _issue_rows(self) -> dict[str, RowsStatement]:
        issues = self._t("validation_issues")
        return {
            "delete": RowsStatement(
                self._counted(
                    sql.SQL(
                        "DELETE FROM {} AS i USING jsonb_to_recordset(%s::jsonb)"
                        " AS r(tenant_id uuid, id uuid)"
                        " WHERE i.tenant_id = r.tenant_id AND i.id = r.id RETURNING i.tenant_id"
                    ).format(issues),
                    -1,
                )
            ),
            "insert": RowsStatement(
                self._counted(
                    sql.SQL(
                        "INSERT INTO {} (tenant_id, id, product_id, variant_id, code, severity,"
                        " message, attribute_key, detected_at)"
                        " SELECT tenant_id, id, product_id, variant_id, code, severity, message,"
                        " NULL, detected_at FROM jsonb_to_recordset(%s::jsonb) AS r(tenant_id"
                        " uuid, id uuid, product_id uuid, variant_id uuid, code text,"
                        " severity text, message text, detected_at timestamptz)"
                        " ON CONFLICT (tenant_id, id) DO NOTHING RETURNING tenant_id"
                    ).format(issues),
                    +1,
                )
            ),
        }

    def _write_issues(
        self, cur: Statements, deletes: list[dict[str, Any]], inserts: list[dict[str, Any]]
    ) -> None:
        """Remove issues by (tenant_id, id); add issues made by _issue_row."""
        for row in deletes:
            self._count(cur, row["tenant_id"])
        self._issue_rows["delete"].execute(cur, deletes)
        self._issue_rows["insert"].execute(cur, inserts)

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
                    _issue_row(
                        tenant_id, iid, product_id, None, "NO_VARIANTS", NO_VARIANTS_MESSAGE, since
                    )
                )
        self._set_variant_counts.execute(cur, counts)
        self._write_issues(cur, deletes, inserts)

    @functools.cached_property
    def _set_variant_counts(self) -> RowsStatement:
        return RowsStatement(
            sql.SQL(
                "UPDATE {} AS p SET variant_count = r.variant_count FROM jsonb_to_recordset("
                "%s::jsonb) AS r(tenant_id uuid, id uuid, variant_count int)"
                " WHERE p.tenant_id = r.tenant_id AND p.id = r.id"
            ).format(self._t("validation_products"))
        )

    # -- product-level rules, set-based over a scope of products --------------------------

    def _desired_product_issues(self, scope: sql.Composable) -> sql.Composable:
        """SELECT of (tenant_id, product_id, code, message, attribute_key) for the scope
        (NO_VARIANTS is kept by the variant counts, see _flush_variant_counts)."""
        return sql.SQL(
            """
            SELECT p.tenant_id, p.id, 'UNKNOWN_CATEGORY', 'Category ''' || p.category
                   || ''' does not exist (it may have been deleted).', NULL::text
              FROM {products} p WHERE {scope} AND p.category IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM {categories} c
                                WHERE c.tenant_id = p.tenant_id AND c.slug = p.category)
            UNION ALL
            SELECT p.tenant_id, p.id, 'MISSING_REQUIRED_ATTRIBUTE', 'Attribute ''' || a.key
                   || ''' is required by template ''' || t.name || ''' but has no value.',
                   a.key
              FROM {products} p
              JOIN {templates} t ON t.tenant_id = p.tenant_id AND t.id = p.template_id
              JOIN {attributes} a ON a.tenant_id = p.tenant_id AND a.id = ANY(t.required_ids)
             WHERE {scope} AND (NOT p.attributes ? a.key OR p.attributes ->> a.key = '')
            """
        ).format(
            products=self._t("validation_products"),
            categories=self._t("validation_categories"),
            templates=self._t("validation_templates"),
            attributes=self._t("validation_attributes"),
            scope=scope,
        )

    def _reconcile_products(
        self,
        cur: Statements,
        tenant_id: str,
        scope: sql.Composable,
        params: list[Any],
        at: Any,
        *,
        fresh: bool = False,
    ) -> None:
        """Make the category and template issues of every product in ``scope`` match the
        rules (``fresh``: the scope is a new product, which has no issues to remove yet)."""
        self.write_inserts(cur)
        scope_sql = sql.SQL("p.tenant_id = %s AND ") + scope
        scope_params = [tenant_id, *params]
        ided = sql.SQL(
            "desired (tenant_id, product_id, code, message, attribute_key) AS ({desired}),"
            " ided AS (SELECT d.*, md5(d.product_id::text || '||' || d.code || '|'"
            " || COALESCE(d.attribute_key, '') || '|' || d.message)::uuid AS id FROM desired d)"
        ).format(desired=self._desired_product_issues(scope_sql))
        cur.execute(
            self._counted(
                sql.SQL(
                    "INSERT INTO {issues} (tenant_id, id, product_id, variant_id, code, severity,"
                    " message, attribute_key, detected_at)"
                    " SELECT tenant_id, id, product_id, NULL, code, 'ERROR',"
                    " message, attribute_key, %s FROM ided"
                    " ON CONFLICT (tenant_id, id) DO NOTHING RETURNING tenant_id"
                ).format(issues=self._t("validation_issues")),
                +1,
                before=ided,
            ),
            [*scope_params * 2, at],
        )
        if fresh:
            return
        self._count(cur, tenant_id)
        cur.execute(
            self._counted(
                sql.SQL(
                    "DELETE FROM {issues} i USING {products} p"
                    " WHERE i.tenant_id = p.tenant_id AND i.product_id = p.id AND {scope}"
                    " AND i.variant_id IS NULL AND i.code = ANY(%s)"
                    " AND i.id NOT IN (SELECT id FROM ided) RETURNING i.tenant_id"
                ).format(
                    issues=self._t("validation_issues"),
                    products=self._t("validation_products"),
                    scope=scope_sql,
                ),
                -1,
                before=ided,
            ),
            [*scope_params * 3, ["UNKNOWN_CATEGORY", "MISSING_REQUIRED_ATTRIBUTE"]],
        )

    def _reconcile_product(
        self, cur: Statements, tenant_id: str, product_id: str, at: Any, *, fresh: bool = False
    ) -> None:
        self._reconcile_products(
            cur, tenant_id, sql.SQL("p.id = %s"), [product_id], at, fresh=fresh
        )

    # -- event handlers -------------------------------------------------------------------

    @functools.cached_property
    def _upsert_product_rows(self) -> RowsStatement:
        return RowsStatement(
            sql.SQL(
                "INSERT INTO {} (tenant_id, id, category, template_id, attributes)"
                " SELECT tenant_id, id, category, template_id, attributes"
                " FROM jsonb_to_recordset(%s::jsonb) AS r(tenant_id uuid, id uuid,"
                " category text, template_id uuid, attributes jsonb)"
                " ON CONFLICT (tenant_id, id) DO UPDATE SET category = EXCLUDED.category,"
                " template_id = EXCLUDED.template_id, attributes = EXCLUDED.attributes"
            ).format(self._t("validation_products")),
            key=("tenant_id", "id"),
        )

    def _upsert_product(self, cur: Statements, event: Any, fields: dict[str, Any]) -> None:
        self.defer(
            self._upsert_product_rows,
            {
                "tenant_id": event.tenant_id,
                "id": entity_id_of(event.originator_id),
                "category": fields.get("category"),
                "template_id": fields.get("template_id"),
                "attributes": fields.get("attributes") or {},
            },
        )

    def on_product_created(self, cur: Statements, event: Product.Created, pos: int) -> None:
        product_id = entity_id_of(event.originator_id)
        self._upsert_product(cur, event, event.fields)
        if event.fields.get("category") or event.fields.get("template_id"):
            # Without either, no category or template rule can apply yet.
            self._reconcile_product(cur, event.tenant_id, product_id, event.timestamp, fresh=True)
        self._count_steps.setdefault((event.tenant_id, product_id), []).append(
            (None, event.timestamp)
        )

    def on_product_updated(self, cur: Statements, event: Product.Updated, pos: int) -> None:
        relevant = {"category", "template_id", "attributes"} & set(event.changes)
        if not relevant:
            return
        self.write_inserts(cur)
        product_id = entity_id_of(event.originator_id)
        assignments = [sql.SQL("{} = %s").format(sql.Identifier(name)) for name in relevant]
        values = [
            Jsonb(event.changes[n]["to"] or {}) if n == "attributes" else event.changes[n]["to"]
            for n in relevant
        ]
        cur.execute(
            sql.SQL("UPDATE {} SET {} WHERE tenant_id = %s AND id = %s").format(
                self._t("validation_products"), sql.SQL(", ").join(assignments)
            ),
            [*values, event.tenant_id, product_id],
        )
        self._reconcile_product(cur, event.tenant_id, product_id, event.timestamp)

    def on_product_deleted(self, cur: Statements, event: Product.Deleted, pos: int) -> None:
        self.write_inserts(cur)
        product_id = entity_id_of(event.originator_id)
        cur.execute(
            self._counted(
                sql.SQL(
                    "DELETE FROM {} WHERE tenant_id = %s AND product_id = %s RETURNING tenant_id"
                ).format(self._t("validation_issues")),
                -1,
            ),
            (event.tenant_id, product_id),
        )
        self._count(cur, event.tenant_id)
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE tenant_id = %s AND id = %s").format(
                self._t("validation_products")
            ),
            (event.tenant_id, product_id),
        )
        self._count_steps.pop((event.tenant_id, product_id), None)

    def _variant_step(self, event: Any, product_id: str, data: Any, full: bool) -> None:
        key = (event.tenant_id, entity_id_of(event.originator_id))
        self._variant_steps.setdefault(key, []).append((product_id, data, full, event.timestamp))

    def on_variant_created(self, cur: Statements, event: Variant.Created, pos: int) -> None:
        product_id = event.fields["product_id"]
        self._variant_step(event, product_id, rule_inputs(event.fields), True)
        self._count_steps.setdefault((event.tenant_id, product_id), []).append((1, event.timestamp))

    def on_variant_updated(self, cur: Statements, event: Variant.Updated, pos: int) -> None:
        changes = event.changes
        inputs: dict[str, Any] = {
            name: changes[name]["to"] for name in ("sku", "barcode") if name in changes
        }
        price = changes.get("price")
        if price is not None and (price["from"] is None) != (price["to"] is None):
            inputs["priced"] = price["to"] is not None
        if inputs:
            self._variant_step(event, "", inputs, False)

    def on_variant_deleted(self, cur: Statements, event: Variant.Deleted, pos: int) -> None:
        product_id = event.fields["product_id"]
        self._variant_step(event, product_id, None, True)
        self._count_steps.setdefault((event.tenant_id, product_id), []).append(
            (-1, event.timestamp)
        )

    # categories, templates and attributes re-evaluate every product they touch, set-based

    def _category_scope(self, cur: Statements, event: Any, slugs: list[str]) -> None:
        self._reconcile_products(
            cur, event.tenant_id, sql.SQL("p.category = ANY(%s)"), [slugs], event.timestamp
        )

    def on_category_created(self, cur: Statements, event: Category.Created, pos: int) -> None:
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (tenant_id, slug, id) VALUES (%s, %s, %s)"
                " ON CONFLICT (tenant_id, slug) DO UPDATE SET id = EXCLUDED.id"
            ).format(self._t("validation_categories")),
            (event.tenant_id, event.fields["slug"], entity_id_of(event.originator_id)),
        )
        self._category_scope(cur, event, [event.fields["slug"]])

    def on_category_updated(self, cur: Statements, event: Category.Updated, pos: int) -> None:
        change = event.changes.get("slug")
        if change is None:
            return
        table = self._t("validation_categories")
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE tenant_id = %s AND slug = %s").format(table),
            (event.tenant_id, change["from"]),
        )
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (tenant_id, slug, id) VALUES (%s, %s, %s)"
                " ON CONFLICT (tenant_id, slug) DO UPDATE SET id = EXCLUDED.id"
            ).format(table),
            (event.tenant_id, change["to"], entity_id_of(event.originator_id)),
        )
        self._category_scope(cur, event, [change["from"], change["to"]])

    def on_category_deleted(self, cur: Statements, event: Category.Deleted, pos: int) -> None:
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE tenant_id = %s AND slug = %s").format(
                self._t("validation_categories")
            ),
            (event.tenant_id, event.fields["slug"]),
        )
        self._category_scope(cur, event, [event.fields["slug"]])

    def _template_scope(self, cur: Statements, event: Any) -> None:
        self._reconcile_products(
            cur,
            event.tenant_id,
            sql.SQL("p.template_id = %s"),
            [entity_id_of(event.originator_id)],
            event.timestamp,
        )

    def _upsert_template(self, cur: Statements, event: Any, name: str, required: list[str]) -> None:
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (tenant_id, id, name, required_ids) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (tenant_id, id) DO UPDATE SET name = EXCLUDED.name,"
                " required_ids = EXCLUDED.required_ids"
            ).format(self._t("validation_templates")),
            (event.tenant_id, entity_id_of(event.originator_id), name, required),
        )

    def on_template_created(self, cur: Statements, event: Template.Created, pos: int) -> None:
        self._upsert_template(
            cur, event, event.fields["name"], event.fields.get("required_attribute_ids") or []
        )
        self._template_scope(cur, event)

    def on_template_updated(self, cur: Statements, event: Template.Updated, pos: int) -> None:
        if "required_attribute_ids" not in event.changes and "name" not in event.changes:
            return
        table = self._t("validation_templates")
        if "name" in event.changes:
            cur.execute(
                sql.SQL("UPDATE {} SET name = %s WHERE tenant_id = %s AND id = %s").format(table),
                (event.changes["name"]["to"], event.tenant_id, entity_id_of(event.originator_id)),
            )
        if "required_attribute_ids" in event.changes:
            cur.execute(
                sql.SQL("UPDATE {} SET required_ids = %s WHERE tenant_id = %s AND id = %s").format(
                    table
                ),
                (
                    event.changes["required_attribute_ids"]["to"] or [],
                    event.tenant_id,
                    entity_id_of(event.originator_id),
                ),
            )
            self._template_scope(cur, event)

    def on_template_deleted(self, cur: Statements, event: Template.Deleted, pos: int) -> None:
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE tenant_id = %s AND id = %s").format(
                self._t("validation_templates")
            ),
            (event.tenant_id, entity_id_of(event.originator_id)),
        )
        self._template_scope(cur, event)

    def on_attribute_created(self, cur: Statements, event: Attribute.Created, pos: int) -> None:
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (tenant_id, id, key) VALUES (%s, %s, %s)"
                " ON CONFLICT (tenant_id, id) DO NOTHING"
            ).format(self._t("validation_attributes")),
            (event.tenant_id, entity_id_of(event.originator_id), event.fields["key"]),
        )

    def on_attribute_deleted(self, cur: Statements, event: Attribute.Deleted, pos: int) -> None:
        attribute_id = entity_id_of(event.originator_id)
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE tenant_id = %s AND id = %s").format(
                self._t("validation_attributes")
            ),
            (event.tenant_id, attribute_id),
        )
        self._reconcile_products(
            cur,
            event.tenant_id,
            sql.SQL(
                "p.template_id IN (SELECT id FROM {} WHERE tenant_id = p.tenant_id"
                " AND %s = ANY(required_ids))"
            ).format(self._t("validation_templates")),
            [attribute_id],
            event.timestamp,
        )

    handlers: ClassVar[dict[type[Any], EventHandler]] = {
        Product.Created: on_product_created,
        Product.Updated: on_product_updated,
        Product.Reverted: on_product_updated,
        Product.Deleted: on_product_deleted,
        Variant.Created: on_variant_created,
        Variant.Updated: on_variant_updated,
        Variant.Deleted: on_variant_deleted,
        Category.Created: on_category_created,
        Category.Updated: on_category_updated,
        Category.Deleted: on_category_deleted,
        Template.Created: on_template_created,
        Template.Updated: on_template_updated,
        Template.Deleted: on_template_deleted,
        Attribute.Created: on_attribute_created,
        Attribute.Deleted: on_attribute_deleted,
    }
