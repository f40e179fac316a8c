"""The entities view: one row per live variant, category, brand, attribute, attribute group,
template and media item. Fields live in ``doc``; the columns lists filter and sort on are
lifted out of it."""

from __future__ import annotations

import functools
from typing import Any, ClassVar

from psycopg import Cursor, sql
from psycopg.types.json import Jsonb

from pim.domain.entity import Entity
from pim.domain.ids import entity_id_of
from pim.domain.product import Product
from pim.domain.registry import ENTITY_CLASSES
from pim.projections.base import EventHandler, Projection

LIFTED = ("product_id", "variant_id", "sort_order")


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
            )""",
            f"CREATE INDEX IF NOT EXISTS {t}_created_idx"
            f" ON {t} (tenant_id, entity_type, created_at, id)",
            f"CREATE INDEX IF NOT EXISTS {t}_product_idx"
            f" ON {t} (tenant_id, product_id, entity_type, created_at, id)",
            f"CREATE INDEX IF NOT EXISTS {t}_variant_idx"
            f" ON {t} (tenant_id, variant_id) WHERE variant_id IS NOT NULL",
            f"CREATE INDEX IF NOT EXISTS {t}_media_order_idx"
            f" ON {t} (tenant_id, entity_type, sort_order, created_at, id)",
        ]

    def on_created(self, cur: Cursor[Any], event: Entity.Created, position: int) -> None:
        entity_type = _TYPE_OF_TOPIC[type(event)]
        fields = event.fields
        self.defer_insert(
            self._insert_sql,
            (
                event.tenant_id,
                entity_type,
                entity_id_of(event.originator_id),
                fields.get("product_id"),
                fields.get("variant_id"),
                fields.get("sort_order") or 0,
                Jsonb(fields),
                event.originator_version,
                event.timestamp,
                event.timestamp,
            ),
        )

    @functools.cached_property
    def _insert_sql(self) -> sql.Composed:
        return sql.SQL(
            "INSERT INTO {} (tenant_id, entity_type, id, product_id, variant_id, sort_order,"
            " doc, version, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        ).format(sql.Identifier(self.table("entities_view")))

    def begin(self) -> None:
        self._inserts = []

    def flush(self, cur: Cursor[Any]) -> None:
        self.write_inserts(cur)

    def on_updated(self, cur: Cursor[Any], event: Entity.Updated, position: int) -> None:
        new_values = {name: change["to"] for name, change in event.changes.items()}
        lifted = tuple(column for column in LIFTED if column in new_values)

        def build() -> sql.Composed:
            assignments: list[sql.Composable] = [
                sql.SQL("doc = doc || %s"),
                sql.SQL("version = %s"),
                sql.SQL("updated_at = %s"),
                *(sql.SQL("{} = %s").format(sql.Identifier(column)) for column in lifted),
            ]
            return sql.SQL("UPDATE {} SET {} WHERE tenant_id = %s AND id = %s").format(
                sql.Identifier(self.table("entities_view")), sql.SQL(", ").join(assignments)
            )

        params: list[Any] = [Jsonb(new_values), event.originator_version, event.timestamp]
        for column in lifted:
            value = new_values[column]
            params.append((value or 0) if column == "sort_order" else value)
        self.defer_insert(
            self.statement(("update", lifted), build),
            (*params, event.tenant_id, entity_id_of(event.originator_id)),
        )

    def on_deleted(self, cur: Cursor[Any], event: Entity.Deleted, position: int) -> None:
        statement = self.statement(
            "delete",
            lambda: sql.SQL("DELETE FROM {} WHERE tenant_id = %s AND id = %s").format(
                sql.Identifier(self.table("entities_view"))
            ),
        )
        self.defer_insert(statement, (event.tenant_id, entity_id_of(event.originator_id)))

    handlers: ClassVar[dict[type[Any], EventHandler]] = {}


_TYPE_OF_TOPIC: dict[type[Any], str] = {}
for _cls in ENTITY_CLASSES:
    if _cls is Product:
        continue
    _TYPE_OF_TOPIC[_cls.Created] = _cls.entity_type
    EntitiesView.handlers[_cls.Created] = EntitiesView.on_created
    EntitiesView.handlers[_cls.Updated] = EntitiesView.on_updated
    EntitiesView.handlers[_cls.Deleted] = EntitiesView.on_deleted
