"""The litestar application factory."""

from __future__ import annotations

import functools
import logging
from typing import Any

from litestar import Litestar, Request, Response, Router
from litestar.middleware import DefineMiddleware
from litestar.routes import HTTPRoute

from pim.api.audit import AuditController
from pim.api.bodies import MAX_BODY_BYTES
from pim.api.health import HealthController
from pim.api.history import ChangeFeedController, ProductHistoryController
from pim.api.http import API_PREFIX
from pim.api.idempotency import IdempotencyMiddleware
from pim.api.identity import IdentityMiddleware
from pim.api.insights import InsightsController
from pim.api.jobs import JobsController
from pim.api.openapi import docs_assets, openapi_config
from pim.api.problems import EXCEPTION_HANDLERS
from pim.api.reads import ReadSide
from pim.api.resources import routers
from pim.api.webhooks import WebhookController
from pim.services import Services

log = logging.getLogger(__name__)


@functools.cache
def _allowed_methods(app: Litestar) -> dict[str, str]:
    """Path template -> the Allow header of its OPTIONS answer."""
    return {
        route.path_format: ", ".join(sorted(route.methods))
        for route in app.routes
        if isinstance(route, HTTPRoute)
    }


async def answer_options(request: Request[Any, Any, Any]) -> Response[None] | None:
    """OPTIONS lists every method of the path. (litestar's own OPTIONS handler keeps the
    methods of the first handler registered on a path when several handlers share it.)"""
    if request.method != "OPTIONS":
        return None
    methods = _allowed_methods(request.app).get(request.scope.get("path_template", ""))
    return Response(None, status_code=204, headers={"Allow": methods or "OPTIONS"})


def create_app(services: Services) -> Litestar:
    """Build the HTTP API over already-built services (the caller owns their lifetime)."""

    async def open_read_side(app: Litestar) -> None:
        app.state.reads = await ReadSide.open(services)

    async def close_read_side(app: Litestar) -> None:
        reads: ReadSide | None = getattr(app.state, "reads", None)
        if reads is not None:
            await reads.close()

    api = Router(
        path=API_PREFIX,
        route_handlers=[
            *routers(),
            ProductHistoryController,
            ChangeFeedController,
            AuditController,
            InsightsController,
            JobsController,
            WebhookController,
        ],
    )
    app = Litestar(
        route_handlers=[api, HealthController, docs_assets()],
        middleware=[
            DefineMiddleware(IdentityMiddleware, verifier=services.verifier),
            DefineMiddleware(IdempotencyMiddleware),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        before_request=answer_options,
        on_startup=[open_read_side],
        on_shutdown=[close_read_side],
        openapi_config=openapi_config(),
        request_max_body_size=MAX_BODY_BYTES,
        debug=False,
        # Logging is configured once per process by the CLI (one format for every line).
        logging_config=None,
    )
    app.state.services = services
    return app
