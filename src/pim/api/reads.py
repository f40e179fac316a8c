"""The API's read side: an async connection pool and the queries over it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from pim.bootstrap import Services, connection_kwargs
from pim.domain.attribute import ATTRIBUTE_TYPES
from pim.infra.database import POOL_TIMEOUT_S
from pim.queries.audit import AuditQueries
from pim.queries.entities import EntityQueries, column_uuid, doc_equals
from pim.queries.history import HistoryQueries
from pim.queries.insights import InsightQueries
from pim.queries.jobs import JobQueries
from pim.queries.products import ProductQueries


def resource_queries(pool: AsyncConnectionPool[AsyncConnection[Any]]) -> dict[str, Any]:
    return {
        "product": ProductQueries(pool),
        "variant": EntityQueries(pool, "variant", filters={"sku": doc_equals("sku", "sku")}),
        "category": EntityQueries(
            pool,
            "category",
            filters={"parent_id": doc_equals("parent_id", "parent_id", uuid=True)},
        ),
        "brand": EntityQueries(
            pool,
            "brand",
        ),
        "attribute": EntityQueries(
            pool,
            "attribute",
            filters={"type": doc_equals("type", "type", choices=ATTRIBUTE_TYPES)},
        ),
        "attribute_group": EntityQueries(
            pool,
            "attribute_group",
        ),
        "template": EntityQueries(
            pool,
            "template",
        ),
        "media": EntityQueries(
            pool,
            "media",
            by_sort_order=True,
            filters={
                "product_id": column_uuid("product_id", "product_id"),
                "variant_id": column_uuid("variant_id", "variant_id"),
            },
        ),
    }


READ_STATEMENT_TIMEOUT_S = 15


@dataclass
class ReadSide:
    pool: AsyncConnectionPool[AsyncConnection[Any]]
    redis: aioredis.Redis
    resources: dict[str, Any]  # entity type -> its queries (get / list)
    audit: AuditQueries
    insights: InsightQueries
    history: HistoryQueries
    jobs: JobQueries

    @classmethod
    async def open(cls, services: Services, *, pool_size: int = 10) -> ReadSide:
        pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
            services.database_url,
            min_size=1,
            max_size=pool_size,
            # A read never takes long; one that does is cut off (a 503, not a hang).
            kwargs=connection_kwargs(statement_timeout_s=READ_STATEMENT_TIMEOUT_S),
            open=False,
            name="reads",
            timeout=POOL_TIMEOUT_S,
        )
        await pool.open(wait=True, timeout=30)
        redis_url = services.settings.redis_url or "redis://127.0.0.1:6379/0"
        return cls(
            pool=pool,
            redis=aioredis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2),
            resources=resource_queries(pool),
            audit=AuditQueries(pool, services.store),
            insights=InsightQueries(pool),
            history=HistoryQueries(pool, services.store),
            jobs=JobQueries(pool, services.store),
        )

    async def close(self) -> None:
        await self.pool.close()
        await self.redis.aclose()
