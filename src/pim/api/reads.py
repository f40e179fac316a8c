"""The API's read side: an async connection pool and the queries over it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from pim.domain.registry import RESOURCE_TYPES
from pim.infra.database import POOL_TIMEOUT_S, connection_kwargs
from pim.queries.audit import AuditQueries
from pim.queries.entities import EntityQueries
from pim.queries.history import HistoryQueries
from pim.queries.insights import InsightQueries
from pim.queries.jobs import JobQueries
from pim.queries.products import ProductQueries
from pim.services import Services


def resource_queries(pool: AsyncConnectionPool[AsyncConnection[Any]]) -> dict[str, Any]:
    """Each declared resource type's queries (get / list), over the read model it declares."""
    out: dict[str, Any] = {}
    for resource in RESOURCE_TYPES:
        if resource.read_model == "products":
            out[resource.entity_type] = ProductQueries(pool)
        else:
            out[resource.entity_type] = EntityQueries(pool, resource)
    return out


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
