"""Per-tenant counters, so GET /stats is one primary-key read whatever the catalog's size."""

from __future__ import annotations

import functools
from typing import Any, ClassVar

from psycopg import sql

from pim.domain.entity import Entity
from pim.domain.product import Product
from pim.domain.registry import ENTITY_CLASSES
from pim.projections.base import EventHandler, Projection, RowsStatement
from pim.projections.statements import Statements

# entity type -> counter column
COUNTERS = {
    "product": "products",
    "variant": "variants",
    "brand": "brands",
    "category": "categories",
    "attribute": "attributes",
    "attribute_group": "attribute_groups",
    "template": "templates",
    "media": "media",
}
STATUS_COLUMNS = {"ACTIVE": "active", "DRAFT": "draft", "ARCHIVED": "archived"}
_COLUMNS = [*COUNTERS.values(), *STATUS_COLUMNS.values()]


class StatsView(Projection):
    name: ClassVar[str] = "stats"
    table_bases: ClassVar[tuple[str, ...]] = ("stats_view",)

    def ddl(self) -> list[str]:
        columns = ", ".join(
            f"{c} bigint NOT NULL DEFAULT 0" for c in [*COUNTERS.values(), *STATUS_COLUMNS.values()]
        )
        return [
            f"CREATE TABLE IF NOT EXISTS {self.table('stats_view')}"
            f" (tenant_id uuid PRIMARY KEY, {columns})"
        ]

    def __init__(self, table_suffix: str = "") -> None:
        super().__init__(table_suffix)
        self._pending: dict[str, dict[str, int]] = {}

    def begin(self) -> None:
        self._pending = {}

    def _add(self, cur: Statements, tenant_id: str, deltas: dict[str, int]) -> None:
        """Deferred to the end of the batch: one upsert per tenant, not one per event."""
        pending = self._pending.setdefault(tenant_id, {})
        for column, delta in deltas.items():
            pending[column] = pending.get(column, 0) + delta

    def flush(self, cur: Statements) -> None:
        rows = [
            {"tenant_id": tenant_id, **deltas}
            for tenant_id, deltas in self._pending.items()
            if any(deltas.values())
        ]
        self._add_rows.execute(cur, rows)
        if any(d < 0 for deltas in self._pending.values() for d in deltas.values()):
            # All-zero counters are no row: the table must not depend on batch boundaries.
            zero = " AND ".join(f"{c} = 0" for c in _COLUMNS)
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE tenant_id = ANY(%s) AND {}").format(
                    sql.Identifier(self.table("stats_view")), sql.SQL(zero)
                ),
                (list(self._pending),),
            )
        self._pending = {}

    @functools.cached_property
    def _add_rows(self) -> RowsStatement:
        """Every tenant's deltas of a batch in one statement (a missing delta is 0)."""
        table = sql.Identifier(self.table("stats_view"))
        columns = [sql.Identifier(c) for c in _COLUMNS]
        return RowsStatement(
            sql.SQL(
                "INSERT INTO {table} AS t (tenant_id, {cols}) SELECT tenant_id, {values}"
                " FROM jsonb_to_recordset(%s::jsonb) AS r(tenant_id uuid, {types})"
                " ON CONFLICT (tenant_id) DO UPDATE SET {sets}"
            ).format(
                table=table,
                cols=sql.SQL(", ").join(columns),
                values=sql.SQL(", ").join(sql.SQL("COALESCE(r.{}, 0)").format(c) for c in columns),
                types=sql.SQL(", ").join(sql.SQL("{} bigint").format(c) for c in columns),
                sets=sql.SQL(", ").join(
                    sql.SQL("{c} = t.{c} + EXCLUDED.{c}").format(c=c) for c in columns
                ),
            )
        )

    def on_created(self, cur: Statements, event: Entity.Created, position: int) -> None:
        deltas = {COUNTERS[_TYPE_OF[type(event)]]: 1}
        if isinstance(event, Product.Created):
            deltas[STATUS_COLUMNS[event.fields["status"]]] = 1
        self._add(cur, event.tenant_id, deltas)

    def on_deleted(self, cur: Statements, event: Entity.Deleted, position: int) -> None:
        deltas = {COUNTERS[_TYPE_OF[type(event)]]: -1}
        if isinstance(event, Product.Deleted):
            deltas[STATUS_COLUMNS[event.fields["status"]]] = -1
        self._add(cur, event.tenant_id, deltas)

    def on_product_updated(self, cur: Statements, event: Product.Updated, position: int) -> None:
        change = event.changes.get("status")
        if change is not None:
            self._add(
                cur,
                event.tenant_id,
                {STATUS_COLUMNS[change["from"]]: -1, STATUS_COLUMNS[change["to"]]: 1},
            )

    handlers: ClassVar[dict[type[Any], EventHandler]] = {
        Product.Updated: on_product_updated,
        Product.Reverted: on_product_updated,
    }


_TYPE_OF: dict[type[Any], str] = {}
for _cls in ENTITY_CLASSES:
    _TYPE_OF[_cls.Created] = _TYPE_OF[_cls.Deleted] = _cls.entity_type
    StatsView.handlers[_cls.Created] = StatsView.on_created
    StatsView.handlers[_cls.Deleted] = StatsView.on_deleted
