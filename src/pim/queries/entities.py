"""Read-side queries over the entities view, one instance per resource type."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from pim.domain.resource import ListFilter, ResourceType, response_fields
from pim.queries.pages import (
    CreatedKey,
    InvalidQuery,
    Rendered,
    compact,
    json_array,
    keyset_page,
    view_json,
)


def entity_json(resource: ResourceType) -> sql.Composable:
    """One item as JSON text: its view's fields, in its order, from the row's document
    (the metadata from its columns)."""

    def value_of(name: str) -> sql.Composable:
        if name in ("id", "version"):
            return sql.Identifier(name)
        return sql.SQL("doc -> {}").format(sql.Literal(name))

    return view_json(response_fields(resource.view), value_of)


# A list filter: parses one query parameter into a SQL condition and its parameter.
Filter = Callable[[str], tuple[sql.Composable, Any]]


class SortedKey(msgspec.Struct, array_like=True, frozen=True):
    """Sort key of lists ordered by sort_order, then creation (media)."""

    sort_order: int
    created_at: datetime
    id: UUID


class EntityQueries:
    """Get and list one resource type's items, with the filters and order it declares."""

    def __init__(
        self,
        pool: AsyncConnectionPool[AsyncConnection[Any]],
        resource: ResourceType,
        *,
        table: str = "entities_view",
    ) -> None:
        self.pool = pool
        self.entity_type = resource.entity_type
        self.filters = {f.name: filter_sql(f) for f in resource.filters}
        self.by_sort_order = resource.ordered
        self.table = sql.Identifier(table)
        self.json = entity_json(resource)

    async def get_json(self, tenant_id: str, entity_id: UUID) -> Rendered | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                sql.SQL(
                    "SELECT {}, version, product_id FROM {}"
                    " WHERE tenant_id = %s AND id = %s AND entity_type = %s"
                ).format(self.json, self.table),
                (tenant_id, entity_id, self.entity_type),
                prepare=True,
            )
            row = await cur.fetchone()
        if row is None:
            return None
        return Rendered(compact(row[0].encode()), row[1], str(row[2]) if row[2] else None)

    async def list(
        self,
        tenant_id: str,
        *,
        limit: int,
        cursor: str | None,
        params: Mapping[str, str],
        product_id: str | None = None,
    ) -> tuple[bytes, str | None]:
        where: list[sql.Composable] = [sql.SQL("tenant_id = %s"), sql.SQL("entity_type = %s")]
        args: list[Any] = [tenant_id, self.entity_type]
        if product_id is not None:
            where.append(sql.SQL("product_id = %s"))
            args.append(product_id)
        for name, parse in self.filters.items():
            if name in params:
                condition, value = parse(params[name])
                where.append(condition)
                args.append(value)
        rows, next_cursor = await keyset_page(
            self.pool,
            self.json,
            self.table,
            where,
            args,
            SortedKey if self.by_sort_order else CreatedKey,
            limit=limit,
            cursor=cursor,
        )
        # PostgreSQL renders each item as JSON: no per-row decoding and re-encoding here.
        page = compact(json_array([r[0].encode() for r in rows]))
        return page, next_cursor


def filter_sql(declared: ListFilter) -> Filter:
    """How a declared list filter selects rows: a condition on a column of the view or on a
    field of the item's document, with the parameter's value checked first (400 naming it)."""
    name = declared.name
    target = (
        sql.Identifier(name) if declared.column else sql.SQL("doc ->> {}").format(sql.Literal(name))
    )

    def parse(value: str) -> tuple[sql.Composable, Any]:
        param: Any = value
        if declared.kind == "choice" and value not in declared.choices:
            raise InvalidQuery(name, f"must be one of {', '.join(declared.choices)}")
        if declared.kind == "uuid":
            try:
                param = UUID(value) if declared.column else str(UUID(value))
            except ValueError:
                raise InvalidQuery(name, "must be a UUID") from None
        return sql.SQL("{} = %s").format(target), param

    return parse
