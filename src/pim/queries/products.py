"""Read-side queries over the products view (never over aggregates)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from pim.domain.product import PRODUCT_STATUSES, ProductView
from pim.domain.resource import response_fields
from pim.domain.rules import SLUG_PATTERN
from pim.queries.pages import (
    CreatedKey,
    InvalidQuery,
    Rendered,
    compact,
    json_array,
    keyset_page,
    view_json,
)

# One product as JSON text: ProductView's fields, in its order, from the view's columns.
PRODUCT_JSON = view_json(response_fields(ProductView), lambda name: sql.Identifier(name))


def _uuid_param(name: str, value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise InvalidQuery(name, "must be a UUID") from None


def datetime_param(name: str, value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "+"))
    except ValueError:
        raise InvalidQuery(name, "must be an RFC 3339 date-time") from None
    if parsed.tzinfo is None:
        raise InvalidQuery(name, "must include a time zone (e.g. Z)")
    return parsed


class ProductFilters(msgspec.Struct, frozen=True):
    status: str | None = None
    category: str | None = None
    brand_id: UUID | None = None
    template_id: UUID | None = None
    q: str | None = None
    updated_since: datetime | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> ProductFilters:
        """Filters from query parameters; a malformed value is a 400 naming the parameter."""
        status = params.get("status")
        if status is not None and status not in PRODUCT_STATUSES:
            raise InvalidQuery("status", f"must be one of {', '.join(PRODUCT_STATUSES)}")
        category = params.get("category")
        if category is not None and not SLUG_PATTERN.match(category):
            raise InvalidQuery("category", "must be a category slug")
        q = params.get("q")
        if q is not None and len(q) > 255:
            raise InvalidQuery("q", "must be at most 255 characters")
        return cls(
            status=status,
            category=category,
            brand_id=_uuid_param("brand_id", params["brand_id"]) if "brand_id" in params else None,
            template_id=_uuid_param("template_id", params["template_id"])
            if "template_id" in params
            else None,
            q=q,
            updated_since=datetime_param("updated_since", params["updated_since"])
            if "updated_since" in params
            else None,
        )


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def product_filter_sql(
    tenant_id: str, filters: ProductFilters, alias: str = "p"
) -> tuple[sql.Composable, list[Any]]:
    """The WHERE condition (and its parameters) selecting the tenant's products that match
    ``filters``, with the same meaning as on ``GET /products``; columns are qualified with
    ``alias``."""
    a = sql.Identifier(alias)
    where: list[sql.Composable] = [sql.SQL("{}.tenant_id = %s").format(a)]
    args: list[Any] = [tenant_id]
    for column in ("status", "category", "brand_id", "template_id"):
        value = getattr(filters, column)
        if value is not None:
            where.append(sql.SQL("{}.{} = %s").format(a, sql.Identifier(column)))
            args.append(value)
    if filters.q:
        where.append(sql.SQL("{}.title ILIKE %s").format(a))
        args.append(f"%{_escape_like(filters.q)}%")
    if filters.updated_since is not None:
        where.append(sql.SQL("{}.updated_at >= %s").format(a))
        args.append(filters.updated_since)
    return sql.SQL(" AND ").join(where), args


class ProductQueries:
    def __init__(
        self, pool: AsyncConnectionPool[AsyncConnection[Any]], table: str = "products_view"
    ) -> None:
        self.pool = pool
        self.table = sql.Identifier(table)

    async def get_json(self, tenant_id: str, product_id: UUID) -> Rendered | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                sql.SQL("SELECT {}, version FROM {} WHERE tenant_id = %s AND id = %s").format(
                    PRODUCT_JSON, self.table
                ),
                (tenant_id, product_id),
                prepare=True,
            )
            row = await cur.fetchone()
        return Rendered(compact(row[0].encode()), row[1]) if row else None

    async def list(
        self,
        tenant_id: str,
        *,
        limit: int,
        cursor: str | None,
        params: Mapping[str, str],
        product_id: str | None = None,
    ) -> tuple[bytes, str | None]:
        """One page, oldest first; the cursor of the next page when there is more."""
        condition, args = product_filter_sql(tenant_id, ProductFilters.parse(params), "p")
        rows, next_cursor = await keyset_page(
            self.pool,
            PRODUCT_JSON,
            sql.SQL("{} AS p").format(self.table),
            [condition],
            args,
            CreatedKey,
            limit=limit,
            cursor=cursor,
            alias="p",
        )
        # PostgreSQL renders each product as JSON: no per-column parsing in Python.
        page = compact(json_array([r[0].encode() for r in rows]))
        return page, next_cursor
