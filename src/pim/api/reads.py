"""The API's read side: an async connection pool and the queries over it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from pim.bootstrap import Services, connection_kwargs
from pim.queries.audit import AuditQueries
from pim.queries.products import ProductQueries


@dataclass
class ReadSide:
    pool: AsyncConnectionPool[AsyncConnection[Any]]
    redis: aioredis.Redis
    products: ProductQueries
    audit: AuditQueries

    @classmethod
    async def open(cls, services: Services, *, pool_size: int = 16) -> ReadSide:
        pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
            services.database_url,
            min_size=2,
            max_size=pool_size,
            kwargs=connection_kwargs(),
            open=False,
            name="reads",
        )
        await pool.open(wait=True, timeout=30)
        redis_url = services.settings.redis_url or "redis://127.0.0.1:6379/0"
        return cls(
            pool=pool,
            redis=aioredis.Redis.from_url(redis_url, socket_timeout=2),
            products=ProductQueries(pool),
            audit=AuditQueries(pool, services.store),
        )

    async def close(self) -> None:
        await self.pool.close()
        await self.redis.aclose()
