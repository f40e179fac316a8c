"""The products view: one row per live product, serving lists and reads by id."""

from __future__ import annotations

import functools
from typing import Any, ClassVar

from psycopg import Cursor, sql
from psycopg.types.json import Jsonb

from pim.domain.ids import entity_id_of
from pim.domain.product import Product
from pim.domain.variant import Variant
from pim.projections.base import EventHandler, Projection

# Product fields and the view columns that hold them.
COLUMNS = ("title", "description", "category", "status", "brand_id", "template_id", "attributes")


def _column_value(name: str, value: Any) -> Any:
    return Jsonb(value) if name == "attributes" else value


class ProductsView(Projection):
    name: ClassVar[str] = "products"
    table_bases: ClassVar[tuple[str, ...]] = ("products_view",)

    def ddl(self) -> list[str]:
        t = self.table("products_view")
        return [
            f"""CREATE TABLE IF NOT EXISTS {t} (
                tenant_id uuid NOT NULL,
                id uuid NOT NULL,
                title text NOT NULL,
                description text,
                category text,
                status text NOT NULL,
                brand_id uuid,
                template_id uuid,
                attributes jsonb NOT NULL DEFAULT '{{}}',
                variant_count integer NOT NULL DEFAULT 0,
                version integer NOT NULL,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                PRIMARY KEY (tenant_id, id)
            )""",
            f"CREATE INDEX IF NOT EXISTS {t}_created_idx ON {t} (tenant_id, created_at, id)",
        ]

    @functools.cached_property
    def _insert_sql(self) -> sql.Composed:
        return sql.SQL(
            "INSERT INTO {} (tenant_id, id, title, description, category, status, brand_id,"
            " template_id, attributes, version, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        ).format(sql.Identifier(self.table("products_view")))

    def on_created(self, cur: Cursor[Any], event: Product.Created, position: int) -> None:
        fields = event.fields
        self.defer_insert(
            self._insert_sql,
            (
                event.tenant_id,
                entity_id_of(event.originator_id),
                fields["title"],
                fields.get("description"),
                fields.get("category"),
                fields["status"],
                fields.get("brand_id"),
                fields.get("template_id"),
                Jsonb(fields.get("attributes") or {}),
                event.originator_version,
                event.timestamp,
                event.timestamp,
            ),
        )

    def on_updated(self, cur: Cursor[Any], event: Product.Updated, position: int) -> None:
        names = tuple(name for name in event.changes if name in COLUMNS)

        def build() -> sql.Composed:
            assignments: list[sql.Composable] = [
                sql.SQL("{} = %s").format(sql.Identifier(name)) for name in names
            ]
            assignments += [sql.SQL("version = %s"), sql.SQL("updated_at = %s")]
            return sql.SQL("UPDATE {} SET {} WHERE tenant_id = %s AND id = %s").format(
                sql.Identifier(self.table("products_view")), sql.SQL(", ").join(assignments)
            )

        params = [_column_value(n, event.changes[n]["to"]) for n in names]
        self.defer_insert(
            self.statement(("update", names), build),
            (
                *params,
                event.originator_version,
                event.timestamp,
                event.tenant_id,
                entity_id_of(event.originator_id),
            ),
        )

    def on_deleted(self, cur: Cursor[Any], event: Product.Deleted, position: int) -> None:
        self.write_inserts(cur)
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE tenant_id = %s AND id = %s").format(
                sql.Identifier(self.table("products_view"))
            ),
            (event.tenant_id, entity_id_of(event.originator_id)),
        )

    def __init__(self, table_suffix: str = "") -> None:
        super().__init__(table_suffix)
        self._counts: dict[tuple[str, str], int] = {}

    def begin(self) -> None:
        self._counts = {}
        self._inserts = []

    def _count_variant(self, cur: Cursor[Any], tenant_id: str, product_id: str, delta: int) -> None:
        # variant_count is derived: it changes neither the product's version nor updated_at.
        # Deferred to the end of the batch: one statement for all products touched.
        key = (tenant_id, product_id)
        self._counts[key] = self._counts.get(key, 0) + delta

    def flush(self, cur: Cursor[Any]) -> None:
        self.write_inserts(cur)
        counts = {k: d for k, d in self._counts.items() if d}
        self._counts = {}
        if not counts:
            return
        cur.execute(
            sql.SQL(
                "UPDATE {t} AS p SET variant_count = p.variant_count + d.delta"
                " FROM unnest(%s::uuid[], %s::uuid[], %s::int[]) AS d(tenant_id, id, delta)"
                " WHERE p.tenant_id = d.tenant_id AND p.id = d.id"
            ).format(t=sql.Identifier(self.table("products_view"))),
            ([k[0] for k in counts], [k[1] for k in counts], list(counts.values())),
        )

    def on_variant_created(self, cur: Cursor[Any], event: Variant.Created, position: int) -> None:
        self._count_variant(cur, event.tenant_id, event.fields["product_id"], +1)

    def on_variant_deleted(self, cur: Cursor[Any], event: Variant.Deleted, position: int) -> None:
        self._count_variant(cur, event.tenant_id, event.fields["product_id"], -1)

    handlers: ClassVar[dict[type[Any], EventHandler]] = {
        Product.Created: on_created,
        Product.Updated: on_updated,
        Product.Reverted: on_updated,
        Product.Deleted: on_deleted,
        Variant.Created: on_variant_created,
        Variant.Deleted: on_variant_deleted,
    }
