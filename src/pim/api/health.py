"""Liveness and readiness probes (no authentication)."""

from __future__ import annotations

import msgspec
from litestar import Controller, Response, get

from pim.api.http import AnyRequest, reads_of, services_of


class Health(msgspec.Struct):
    status: str
    checks: dict[str, str] = {}


class HealthController(Controller):
    path = "/"
    tags = ["Health"]
    include_in_schema = True

    @get("/healthz", summary="Alive")
    async def healthz(self) -> Health:
        return Health(status="ok")

    @get("/readyz", summary="Database, Redis and projections reachable and caught up")
    async def readyz(self, request: AnyRequest) -> Response[Health]:
        checks: dict[str, str] = {}
        reads = reads_of(request)
        try:
            async with reads.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT (SELECT COALESCE(MAX(notification_id), 0) FROM catalog_events),"
                    " (SELECT COALESCE(MIN(position), 0) FROM projection_tracking)"
                )
                row = await cur.fetchone()
            checks["database"] = "ok"
            head, tracked = (int(row[0]), int(row[1])) if row else (0, 0)
            lag = head - max(tracked, services_of(request).projector.position)
            checks["projections"] = "ok" if lag <= 0 else f"behind by {lag} events"
        except Exception as exc:  # any failure means not ready
            checks["database"] = f"unavailable: {type(exc).__name__}"
        try:
            await reads.redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"unavailable: {type(exc).__name__}"
        ready = all(v == "ok" for v in checks.values())
        return Response(
            Health(status="ready" if ready else "not ready", checks=checks),
            status_code=200 if ready else 503,
        )
