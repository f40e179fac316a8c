"""The entities view: one row per live variant, category, brand, attribute, attribute group,
template and media item. Fields live in ``doc``; the columns lists filter and sort on are
lifted out of it."""

from __future__ import annotations

import functools
from typing import Any, ClassVar

from psycopg import sql

from pim.domain.entity import Entity
from pim.domain.ids import entity_id_of
from pim.domain.product import Product
from pim.domain.registry import ENTITY_CLASSES
from pim.projections.base import EventHandler, Projection, RowsStatement, update_by_id
from pim.projections.statements import Statements

# Fields lifted out of ``doc`` into columns (lists filter and sort on them), and their types.
LIFTED = {"product_id": "uuid", "variant_id": "uuid", "sort_order": "int"}


class EntitiesView(Projection):
    name: ClassVar[str] = "entities"
    table_bases: ClassVar[tuple[str, ...]] = ("entities_view",)

    def ddl(self) -> list[str]:
        t = self.table("entities_view")
        return [
            f"""CREATE TABLE IF NOT EXISTS {t} (
                tenant_id uuid NOT NULL,
                entity_type text NOT NULL,
                id uuid NOT NULL,
                product_id uuid,
                variant_id uuid,
                sort_order integer NOT NULL DEFAULT 0,
                doc jsonb NOT NULL,
                version integer NOT NULL,
                created_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL,
                PRIMARY KEY (tenant_id, id)
            ) WITH (fillfactor = 70)""",
            f"CREATE INDEX IF NOT EXISTS {t}_created_idx"
            f" ON {t} (tenant_id, entity_type, created_at, id)",
            f"CREATE INDEX IF NOT EXISTS {t}_product_idx"
            f" ON {t} (tenant_id, product_id, entity_type, created_at, id)",
            f"CREATE INDEX IF NOT EXISTS {t}_variant_idx"
            f" ON {t} (tenant_id, variant_id) WHERE variant_id IS NOT NULL",
            f"CREATE INDEX IF NOT EXISTS {t}_media_order_idx"
            f" ON {t} (tenant_id, entity_type, sort_order, created_at, id)",
        ]

    def on_created(self, cur: Statements, event: Entity.Created, position: int) -> None:
        fields = event.fields
        self.defer(
            self._insert,
            {
                "tenant_id": event.tenant_id,
                "entity_type": _TYPE_OF_TOPIC[type(event)],
                "id": entity_id_of(event.originator_id),
                "product_id": fields.get("product_id"),
                "variant_id": fields.get("variant_id"),
                "sort_order": fields.get("sort_order") or 0,
                "doc": fields,
                "version": event.originator_version,
                "ts": event.timestamp,
            },
        )

    @functools.cached_property
    def _insert(self) -> RowsStatement:
        return RowsStatement(
            sql.SQL(
                "INSERT INTO {} (tenant_id, entity_type, id, product_id, variant_id, sort_order,"
                " doc, version, created_at, updated_at)"
                " SELECT tenant_id, entity_type, id, product_id, variant_id, sort_order, doc,"
                " version, ts, ts FROM jsonb_to_recordset(%s::jsonb) AS r(tenant_id uuid,"
                " entity_type text, id uuid, product_id uuid, variant_id uuid, sort_order int,"
                " doc jsonb, version int, ts timestamptz)"
            ).format(sql.Identifier(self.table("entities_view")))
        )

    def begin(self) -> None:
        self._inserts = []

    def flush(self, cur: Statements) -> None:
        self.write_inserts(cur)

    def on_updated(self, cur: Statements, event: Entity.Updated, position: int) -> None:
        new_values = {name: change["to"] for name, change in event.changes.items()}
        lifted = tuple(column for column in LIFTED if column in new_values)

        def build() -> RowsStatement:
            return update_by_id(
                self.table("entities_view"),
                [
                    sql.SQL("doc = t.doc || r.patch, version = r.version, updated_at = r.ts"),
                    *(sql.SQL("{0} = r.{0}").format(sql.Identifier(c)) for c in lifted),
                ],
                {"patch": "jsonb", "version": "int", "ts": "timestamptz"}
                | {column: LIFTED[column] for column in lifted},
            )

        row: dict[str, Any] = {
            "tenant_id": event.tenant_id,
            "id": entity_id_of(event.originator_id),
            "patch": new_values,
            "version": event.originator_version,
            "ts": event.timestamp,
        }
        for column in lifted:
            value = new_values[column]
            row[column] = (value or 0) if column == "sort_order" else value
        self.defer(self.statement(("update", lifted), build), row)

    def on_deleted(self, cur: Statements, event: Entity.Deleted, position: int) -> None:
        statement = self.statement(
            "delete",
            lambda: RowsStatement(
                sql.SQL(
                    "DELETE FROM {} AS e USING jsonb_to_recordset(%s::jsonb)"
                    " AS r(tenant_id uuid, id uuid)"
                    " WHERE e.tenant_id = r.tenant_id AND e.id = r.id"
                ).format(sql.Identifier(self.table("entities_view")))
            ),
        )
        self.defer(
            statement, {"tenant_id": event.tenant_id, "id": entity_id_of(event.originator_id)}
        )

    handlers: ClassVar[dict[type[Any], EventHandler]] = {}


_TYPE_OF_TOPIC: dict[type[Any], str] = {}
for _cls in ENTITY_CLASSES:
    if _cls is Product:
        continue
    _TYPE_OF_TOPIC[_cls.Created] = _cls.entity_type
    EntitiesView.handlers[_cls.Created] = EntitiesView.on_created
    EntitiesView.handlers[_cls.Updated] = EntitiesView.on_updated
    EntitiesView.handlers[_cls.Deleted] = EntitiesView.on_deleted
