"""Webhooks over HTTP: /api/v1/pim/webhooks (register, list, get, delete) and a webhook's
deliveries. The secret is shown once, in the create response."""

from __future__ import annotations

import secrets
from functools import partial
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

import msgspec
from anyio import to_thread
from litestar import Controller, Response, delete, get, post
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from pim.api import http
from pim.api.bodies import decode_body
from pim.api.openapi import READ_RESPONSES, WRITE_RESPONSES, body_of
from pim.domain.errors import FieldError, NotFound, ValidationFailed
from pim.queries.pages import parse_limit
from pim.webhooks import store
from pim.webhooks.store import EVENT_TYPES, CreatedWebhook, Webhook, WebhookDelivery
from pim.webhooks.targets import UnsafeTarget, check_target

MAX_URL_CHARS = 2048
SECRET_MIN_CHARS = 16
SECRET_MAX_CHARS = 256

EventType = Literal["export.completed", "bulk_job.completed", "bulk_job.failed"]


class WebhookInput(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Register a webhook. ``secret`` (16-256 characters) keys the HMAC-SHA256 signature;
    when absent one is generated and returned once."""

    url: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_URL_CHARS)]
    events: list[EventType]
    secret: (
        Annotated[str, msgspec.Meta(min_length=SECRET_MIN_CHARS, max_length=SECRET_MAX_CHARS)]
        | None
    ) = None
    # read-only fields of the resource: accepted and ignored, like every other resource
    id: Any = msgspec.UNSET
    version: Any = msgspec.UNSET
    created_at: Any = msgspec.UNSET
    updated_at: Any = msgspec.UNSET


def _events(requested: list[EventType], errors: list[FieldError]) -> list[str]:
    if not requested:
        errors.append(FieldError("events", "required", "must name at least one event type"))
    chosen: list[str] = []
    for i, name in enumerate(requested):
        if name not in EVENT_TYPES:
            errors.append(
                FieldError(
                    f"events[{i}]", "invalid_choice", f"must be one of {', '.join(EVENT_TYPES)}"
                )
            )
        elif name not in chosen:
            chosen.append(name)
    return chosen


class WebhookController(Controller):
    path = "/webhooks"
    tags = ["Webhooks"]

    @get(
        "/",
        responses=READ_RESPONSES,
        summary="List webhooks, oldest first",
        operation_id="listWebhooks",
    )
    async def list_webhooks(self, request: http.AnyRequest) -> Response[list[Webhook]]:
        params = http.query_params(request)
        items, cursor = await store.list_webhooks(
            http.reads_of(request).pool,
            http.context_of(request).tenant_id,
            limit=parse_limit(params.get("limit")),
            cursor=params.get("cursor"),
        )
        return Response(items, headers=http.next_link(request, cursor))

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        responses=WRITE_RESPONSES,
        operation_class=body_of(WebhookInput),
        summary="Register a webhook (its secret is returned only here)",
        operation_id="createWebhook",
    )
    async def create_webhook(self, request: http.AnyRequest) -> Response[CreatedWebhook]:
        ctx, services = http.context_of(request), http.services_of(request)
        data = decode_body(await request.body(), request.headers.get("content-type"), WebhookInput)
        assert data is not None
        errors: list[FieldError] = []
        events = _events(data.events, errors)
        url = data.url.strip()
        try:
            await to_thread.run_sync(
                partial(check_target, url, allow_private=services.settings.webhook_allow_private)
            )
        except UnsafeTarget as exc:
            errors.append(FieldError("url", "invalid_url", str(exc)))
        if errors:
            raise ValidationFailed(errors)
        webhook_id = uuid4()
        location = http.resource_url(request, "webhooks", webhook_id)
        created = await store.create_webhook(
            http.reads_of(request).pool,
            ctx.tenant_id,
            url=url,
            events=events,
            secret=data.secret if data.secret is not None else secrets.token_urlsafe(32),
            created_by=ctx.actor.actor,
            webhook_id=webhook_id,
            answer=http.answer_for(request, HTTP_201_CREATED, Location=location),
        )
        http.recorded(request, 0)
        return http.respond(msgspec.to_builtins(created), HTTP_201_CREATED, Location=location)

    async def _webhook(self, request: http.AnyRequest, webhook_id: str) -> Webhook:
        hook = await store.get_webhook(
            http.reads_of(request).pool,
            http.context_of(request).tenant_id,
            http.path_uuid(webhook_id, "webhook"),
        )
        if hook is None:
            raise NotFound("webhook not found")
        return hook

    @get(
        "/{webhook_id:str}",
        responses=READ_RESPONSES,
        summary="Get a webhook",
        operation_id="getWebhook",
    )
    async def get_webhook(self, request: http.AnyRequest, webhook_id: str) -> Response[Webhook]:
        return http.respond(await self._webhook(request, webhook_id), 200)

    @delete(
        "/{webhook_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        responses=WRITE_RESPONSES,
        summary="Delete a webhook (and its deliveries)",
        operation_id="deleteWebhook",
    )
    async def delete_webhook(self, request: http.AnyRequest, webhook_id: str) -> None:
        wid: UUID = http.path_uuid(webhook_id, "webhook")
        if not await store.delete_webhook(
            http.reads_of(request).pool,
            http.context_of(request).tenant_id,
            wid,
            expected_version=http.if_match_version(request),
        ):
            raise NotFound("webhook not found")

    @get(
        "/{webhook_id:str}/deliveries",
        responses=READ_RESPONSES,
        summary="A webhook's deliveries, oldest first",
        operation_id="listWebhookDeliveries",
    )
    async def list_deliveries(
        self, request: http.AnyRequest, webhook_id: str
    ) -> Response[list[WebhookDelivery]]:
        hook = await self._webhook(request, webhook_id)
        params = http.query_params(request)
        items, cursor = await store.list_deliveries(
            http.reads_of(request).pool,
            http.context_of(request).tenant_id,
            hook.id,
            limit=parse_limit(params.get("limit")),
            cursor=params.get("cursor"),
        )
        return Response(items, headers=http.next_link(request, cursor))
