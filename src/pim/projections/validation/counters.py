"""Per-tenant issue counters, moved by the very statements that insert or delete issues.

``/stats`` reports a tenant's issue count with one primary-key read of ``validation_counts``;
recounting a tenant's issues would cost as much as it has issues, at every batch. So every
write of ``validation_issues`` is wrapped (``_counted``) in one statement with the counter's
move, by the rows it really inserted or deleted, in the view's transaction: stats and issues
never disagree. A count that drops to zero is removed at the end of the batch, so the table
is the same however the log was cut into batches (a rebuild is compared with the live view)."""

from __future__ import annotations

import functools
from typing import Any

from psycopg import sql

from pim.domain.validation import SEVERITY
from pim.projections.base import RowsStatement
from pim.projections.statements import Statements
from pim.projections.validation.tables import ValidationTables


def issue_row(
    tenant_id: str,
    issue: str,
    product_id: str,
    variant_id: str | None,
    code: str,
    message: str,
    detected_at: Any,
) -> dict[str, Any]:
    """A row for ``IssueCounters._write_issues`` to insert."""
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


class IssueCounters(ValidationTables):
    """Writes of issues, each with its counter's move; the zero counts left by a batch."""

    def begin(self) -> None:
        super().begin()
        self._dirty_tenants: set[str] = set()

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
        """Remove issues by (tenant_id, id); add issues made by issue_row."""
        for row in deletes:
            self._count(cur, row["tenant_id"])
        self._issue_rows["delete"].execute(cur, deletes)
        self._issue_rows["insert"].execute(cur, inserts)

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
