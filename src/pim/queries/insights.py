"""Stats and validation issues: constant-time counters and the live issue list."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from pim.domain.validation import SEVERITY
from pim.queries.pages import InvalidQuery, keyset_page


class ProductsByStatus(msgspec.Struct):
    ACTIVE: int
    DRAFT: int
    ARCHIVED: int


class Stats(msgspec.Struct):
    total_products: int
    total_variants: int
    total_brands: int
    total_categories: int
    total_attributes: int
    total_attribute_groups: int
    total_templates: int
    total_media: int
    products_by_status: ProductsByStatus
    validation_issues: int


class ValidationIssue(msgspec.Struct):
    id: UUID
    product_id: UUID
    variant_id: UUID | None
    code: str
    severity: str
    message: str
    attribute_key: str | None
    detected_at: datetime


class IssueKey(msgspec.Struct, array_like=True, frozen=True):
    detected_at: datetime
    id: UUID


class InsightQueries:
    def __init__(self, pool: AsyncConnectionPool[AsyncConnection[Any]]) -> None:
        self.pool = pool

    async def stats(self, tenant_id: str) -> Stats:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT s.products, s.variants, s.brands, s.categories, s.attributes,"
                " s.attribute_groups, s.templates, s.media, s.active, s.draft, s.archived,"
                " (SELECT issues FROM validation_counts WHERE tenant_id = %s)"
                " FROM (SELECT %s::uuid AS tenant_id) t LEFT JOIN stats_view s USING (tenant_id)",
                (tenant_id, tenant_id),
                prepare=True,
            )
            row = await cur.fetchone()
        values = [int(v or 0) for v in (row or [0] * 12)]
        (
            products,
            variants,
            brands,
            categories,
            attributes,
            groups,
            templates,
            media,
            active,
            draft,
            archived,
            issues,
        ) = values
        return Stats(
            total_products=products,
            total_variants=variants,
            total_brands=brands,
            total_categories=categories,
            total_attributes=attributes,
            total_attribute_groups=groups,
            total_templates=templates,
            total_media=media,
            products_by_status=ProductsByStatus(ACTIVE=active, DRAFT=draft, ARCHIVED=archived),
            validation_issues=issues,
        )

    async def issues(
        self, tenant_id: str, *, limit: int, cursor: str | None, params: Mapping[str, str]
    ) -> tuple[list[ValidationIssue], str | None]:
        where: list[sql.Composable] = [sql.SQL("tenant_id = %s")]
        args: list[Any] = [tenant_id]
        if "product_id" in params:
            try:
                args.append(UUID(params["product_id"]))
            except ValueError:
                raise InvalidQuery("product_id", "must be a UUID") from None
            where.append(sql.SQL("product_id = %s"))
        if "variant_id" in params:
            try:
                args.append(UUID(params["variant_id"]))
            except ValueError:
                raise InvalidQuery("variant_id", "must be a UUID") from None
            where.append(sql.SQL("variant_id = %s"))
        if "code" in params:
            if params["code"] not in SEVERITY:
                raise InvalidQuery("code", f"must be one of {', '.join(SEVERITY)}")
            where.append(sql.SQL("code = %s"))
            args.append(params["code"])
        if "severity" in params:
            if params["severity"] not in ("ERROR", "WARNING"):
                raise InvalidQuery("severity", "must be one of ERROR, WARNING")
            where.append(sql.SQL("severity = %s"))
            args.append(params["severity"])
        rows, next_cursor = await keyset_page(
            self.pool,
            sql.SQL(
                "id, product_id, variant_id, code, severity, message, attribute_key, detected_at"
            ),
            sql.SQL("validation_issues"),
            where,
            args,
            IssueKey,
            limit=limit,
            cursor=cursor,
        )
        items = [ValidationIssue(*row) for row in rows]
        return items, next_cursor
