"""The log's powers over HTTP: product history, revert, and the change feed."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from anyio import to_thread
from litestar import Controller, Response, get, post

from pim.api.bodies import decode_body
from pim.api.http import (
    AnyRequest,
    answer_for,
    context_of,
    if_match_version,
    path_uuid,
    query_params,
    reads_of,
    recorded,
    respond_outcome,
    services_of,
)
from pim.api.openapi import WRITE_RESPONSES, body_of, read_operation
from pim.commands.messages import RevertProduct
from pim.domain.errors import NotFound
from pim.domain.product import ProductView, RevertInput
from pim.queries.audit import AuditEntry, AuditFilters
from pim.queries.history import HistoryEntry
from pim.queries.pages import InvalidQuery, parse_limit, parse_natural


class ProductHistoryController(Controller):
    path = "/products/{product_id:str}"
    tags = ["Products"]

    @get(
        "/history",
        **read_operation("getProductHistory", "Every version of a product, oldest first"),
    )
    async def history(self, request: AnyRequest, product_id: str) -> list[HistoryEntry]:
        ctx = context_of(request)
        entries = await reads_of(request).history.history(
            ctx.tenant_id, path_uuid(product_id, "product")
        )
        if entries is None:
            raise NotFound("product not found")
        return entries

    @post(
        "/revert",
        status_code=200,
        responses=WRITE_RESPONSES,
        summary="Append a version whose content equals an earlier one",
        operation_class=body_of(RevertInput),
        operation_id="revertProduct",
    )
    async def revert(self, request: AnyRequest, product_id: str) -> Response[ProductView]:
        ctx, services = context_of(request), services_of(request)
        pid = path_uuid(product_id, "product")
        data = decode_body(await request.body(), request.headers.get("content-type"), RevertInput)
        assert data is not None
        command = RevertProduct(
            ctx.actor,
            str(pid),
            data.version,
            if_match_version(request),
            answer=answer_for(request, 200),
        )
        outcome = await to_thread.run_sync(services.bus.handle, command)
        recorded(request, outcome.position)
        return respond_outcome(outcome, 200)


class ChangeFeedController(Controller):
    path = "/events"
    tags = ["Change feed"]

    @get("/", **read_operation("listEvents", "The tenant's events, oldest first"))
    async def events(self, request: AnyRequest) -> Response[list[AuditEntry]]:
        ctx = context_of(request)
        params = query_params(request)
        after = parse_natural(params.get("after", "0"))
        if after is None:
            raise InvalidQuery("after", "must be a position (a non-negative integer)")
        limit = parse_limit(params.get("limit"))
        entries, more = await reads_of(request).audit.page(
            ctx.tenant_id,
            AuditFilters.parse(params),
            newest_first=False,
            after=after,
            limit=limit,
        )
        headers: dict[str, Any] = {}
        if more is not None:
            next_params = [(k, v) for k, v in request.query_params.multi_items() if k != "after"]
            next_params.append(("after", str(more)))
            url = f"{str(request.base_url).rstrip('/')}{request.url.path}?{urlencode(next_params)}"
            headers["Link"] = f'<{url}>; rel="next"'
        return Response(entries, headers=headers)
