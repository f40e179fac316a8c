"""The litestar application factory."""

from __future__ import annotations

import logging

from litestar import Litestar, Router
from litestar.middleware import DefineMiddleware

from pim.api.audit import AuditController
from pim.api.bodies import MAX_BODY_BYTES
from pim.api.health import HealthController
from pim.api.history import ChangeFeedController, ProductHistoryController
from pim.api.http import API_PREFIX
from pim.api.idempotency import IdempotencyMiddleware
from pim.api.identity import IdentityMiddleware
from pim.api.insights import InsightsController
from pim.api.jobs import JobsController
from pim.api.openapi import openapi_config
from pim.api.problems import EXCEPTION_HANDLERS
from pim.api.reads import ReadSide
from pim.api.resources import routers
from pim.api.webhooks import WebhookController
from pim.services import Services

log = logging.getLogger(__name__)


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
        route_handlers=[api, HealthController],
        middleware=[
            DefineMiddleware(IdentityMiddleware, verifier=services.verifier),
            DefineMiddleware(IdempotencyMiddleware),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        on_startup=[open_read_side],
        on_shutdown=[close_read_side],
        openapi_config=openapi_config(),
        request_max_body_size=MAX_BODY_BYTES,
        debug=False,
    )
    app.state.services = services
    return app
