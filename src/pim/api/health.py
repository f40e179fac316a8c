"""Liveness and readiness probes (no authentication)."""

from __future__ import annotations

import msgspec
from litestar import Controller, Response, get
from litestar.openapi.datastructures import ResponseSpec
from psycopg import sql

from pim.api.http import AnyRequest, reads_of, services_of


class Health(msgspec.Struct):
    status: str
    checks: dict[str, str] = {}


class HealthController(Controller):
    path = "/"
    tags = ["Health"]
    include_in_schema = True

    @get("/healthz", summary="Alive", operation_id="getHealth")
    async def healthz(self) -> Health:
        return Health(status="ok")

    @get(
        "/readyz",
        summary="Database, Redis and projections reachable and caught up",
        operation_id="getReadiness",
        responses={503: ResponseSpec(Health, description="Not ready: the checks say what is not")},
    )
    async def readyz(self, request: AnyRequest) -> Response[Health]:
        checks: dict[str, str] = {}
        reads = reads_of(request)
        try:
            query, params = services_of(request).projector.pending_query()
            async with reads.pool.connection() as conn:
                cur = await conn.execute(
                    sql.SQL("SELECT count(*) FROM ({}) AS pending").format(query), params
                )
                row = await cur.fetchone()
            checks["database"] = "ok"
            behind = int(row[0]) if row else 0
            checks["projections"] = "ok" if not behind else f"behind for {behind} tenant(s)"
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
