"""The products view: one row per live product, serving lists and reads by id."""

from __future__ import annotations

import functools
from typing import Any, ClassVar

from psycopg import sql

from pim.domain.ids import entity_id_of
from pim.domain.product import Product
from pim.domain.variant import Variant
from pim.projections.base import EventHandler, Projection, RowsStatement, update_by_id
from pim.projections.statements import Statements

# Product fields, the view columns that hold them, and their types.
COLUMNS = {
    "title": "text",
    "description": "text",
    "category": "text",
    "status": "text",
    "brand_id": "uuid",
    "template_id": "uuid",
    "attributes": "jsonb",
}


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
            ) WITH (fillfactor = 70)""",
            f"CREATE INDEX IF NOT EXISTS {t}_created_idx ON {t} (tenant_id, created_at, id)",
        ]

    @functools.cached_property
    def _insert(self) -> RowsStatement:
        return RowsStatement(
            sql.SQL(
                "INSERT INTO {} (tenant_id, id, title, description, category, status, brand_id,"
                " template_id, attributes, version, created_at, updated_at)"
                " SELECT tenant_id, id, title, description, category, status, brand_id,"
                " template_id, COALESCE(attributes, '{{}}'), version, ts, ts"
                " FROM jsonb_to_recordset(%s::jsonb) AS r(tenant_id uuid, id uuid, title text,"
                " description text, category text, status text, brand_id uuid,"
                " template_id uuid, attributes jsonb, version int, ts timestamptz)"
            ).format(sql.Identifier(self.table("products_view")))
        )

    def on_created(self, cur: Statements, event: Product.Created, position: int) -> None:
        fields = event.fields
        self.defer(
            self._insert,
            {
                "tenant_id": event.tenant_id,
                "id": entity_id_of(event.originator_id),
                **{name: fields.get(name) for name in COLUMNS},
                "version": event.originator_version,
                "ts": event.timestamp,
            },
        )

    def on_updated(self, cur: Statements, event: Product.Updated, position: int) -> None:
        names = tuple(name for name in event.changes if name in COLUMNS)

        def build() -> RowsStatement:
            return update_by_id(
                self.table("products_view"),
                [
                    *(
                        sql.SQL(
                            "{0} = COALESCE(r.{0}, '{{}}')"
                            if name == "attributes"
                            else "{0} = r.{0}"
                        ).format(sql.Identifier(name))
                        for name in names
                    ),
                    sql.SQL("version = r.version, updated_at = r.ts"),
                ],
                {"version": "int", "ts": "timestamptz"} | {name: COLUMNS[name] for name in names},
            )

        self.defer(
            self.statement(("update", names), build),
            {
                "tenant_id": event.tenant_id,
                "id": entity_id_of(event.originator_id),
                "version": event.originator_version,
                "ts": event.timestamp,
                **{name: event.changes[name]["to"] for name in names},
            },
        )

    def on_deleted(self, cur: Statements, event: Product.Deleted, position: int) -> None:
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

    def _count_variant(self, cur: Statements, tenant_id: str, product_id: str, delta: int) -> None:
        # variant_count is derived: it changes neither the product's version nor updated_at.
        # Deferred to the end of the batch: one statement for all products touched.
        key = (tenant_id, product_id)
        self._counts[key] = self._counts.get(key, 0) + delta

    def flush(self, cur: Statements) -> None:
        self.write_inserts(cur)
        counts = {k: d for k, d in self._counts.items() if d}
        self._counts = {}
        if not counts:
            return
        self._add_variant_counts.execute(
            cur, [{"tenant_id": t, "id": i, "delta": delta} for (t, i), delta in counts.items()]
        )

    @functools.cached_property
    def _add_variant_counts(self) -> RowsStatement:
        return RowsStatement(
            sql.SQL(
                "UPDATE {t} AS p SET variant_count = p.variant_count + d.delta"
                " FROM jsonb_to_recordset(%s::jsonb) AS d(tenant_id uuid, id uuid, delta int)"
                " WHERE p.tenant_id = d.tenant_id AND p.id = d.id"
            ).format(t=sql.Identifier(self.table("products_view")))
        )

    def on_variant_created(self, cur: Statements, event: Variant.Created, position: int) -> None:
        self._count_variant(cur, event.tenant_id, event.fields["product_id"], +1)

    def on_variant_deleted(self, cur: Statements, event: Variant.Deleted, position: int) -> None:
        self._count_variant(cur, event.tenant_id, event.fields["product_id"], -1)

    handlers: ClassVar[dict[type[Any], EventHandler]] = {
        Product.Created: on_created,
        Product.Updated: on_updated,
        Product.Reverted: on_updated,
        Product.Deleted: on_deleted,
        Variant.Created: on_variant_created,
        Variant.Deleted: on_variant_deleted,
    }
