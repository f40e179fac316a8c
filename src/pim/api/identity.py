"""Who is calling: token verification, tenant/org headers and scopes, as the API contract specifies.

401: missing/malformed/expired/badly signed token (with ``WWW-Authenticate: Bearer``);
400: missing or non-UUID ``X-Tenant-ID`` / ``X-Org-ID``;
403: token for another tenant, org not in the token, or a write without ``pim:write``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from pim.api.bodies import is_json_media_type
from pim.api.problems import ApiError
from pim.auth.tokens import InvalidToken, Principal, TokenVerifier
from pim.domain.context import Actor

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
PUBLIC_PATHS = ("/healthz", "/readyz", "/schema")


@dataclass(frozen=True, slots=True)
class RequestContext:
    principal: Principal
    actor: Actor

    @property
    def tenant_id(self) -> str:
        return self.actor.tenant_id


def header(scope: Scope, name: bytes) -> str | None:
    """A request header's value from the ASGI scope (the first one), or None."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _uuid_header(scope: Scope, name: str) -> str:
    raw = header(scope, name.lower().encode())
    if raw is None or not raw.strip():
        raise ApiError(400, f"header {name} is required", slug="missing-header")
    try:
        return str(UUID(raw.strip()))
    except ValueError:
        raise ApiError(400, f"header {name} must be a UUID", slug="invalid-header") from None


def unauthorized(detail: str) -> ApiError:
    return ApiError(401, detail, slug="unauthorized", headers={"WWW-Authenticate": "Bearer"})


def authenticate(scope: Scope, verifier: TokenVerifier, request_id: str) -> RequestContext:
    authorization = header(scope, b"authorization")
    if not authorization:
        raise unauthorized("an Authorization: Bearer token is required")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("the Authorization header must be 'Bearer <token>'")
    try:
        principal = verifier.verify(token.strip())
    except InvalidToken as exc:
        raise unauthorized(f"the bearer token was rejected: {exc}") from None
    tenant_id = _uuid_header(scope, "X-Tenant-ID")
    org_id = _uuid_header(scope, "X-Org-ID")
    if tenant_id != principal.tenant_id:
        raise ApiError(403, "the token does not grant access to this tenant", slug="forbidden")
    if org_id not in principal.org_ids:
        raise ApiError(
            403, "the token does not grant access to this organization", slug="forbidden"
        )
    method = scope.get("method", "GET")
    if method in WRITE_METHODS and not principal.can_write():
        raise ApiError(403, "this operation requires the pim:write scope", slug="forbidden")
    if not principal.can_read():
        raise ApiError(403, "this operation requires the pim:read scope", slug="forbidden")
    return RequestContext(
        principal=principal,
        actor=Actor(
            tenant_id=tenant_id,
            org_id=org_id,
            actor=principal.subject,
            actor_email=principal.email,
            request_id=request_id,
        ),
    )


def reject_non_json_body(scope: Scope) -> None:
    """A non-empty body that is not JSON is 415 on every route (even one that ignores it)."""
    length = header(scope, b"content-length")
    chunked = (header(scope, b"transfer-encoding") or "").lower() == "chunked"
    if (length and length.strip() != "0") or chunked:
        content_type = header(scope, b"content-type")
        if not is_json_media_type(content_type):
            raise ApiError(
                415,
                f"content type '{content_type}' is not supported; send application/json",
                slug="unsupported-media-type",
            )


class IdentityMiddleware:
    """Authenticates every API request and stamps a request id on it and its response."""

    def __init__(self, app: ASGIApp, verifier: TokenVerifier) -> None:
        self.app = app
        self.verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        supplied = header(scope, b"x-request-id")
        request_id = supplied if supplied and _REQUEST_ID.match(supplied) else str(uuid4())
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        if not scope["path"].startswith(PUBLIC_PATHS):
            scope["user"] = authenticate(scope, self.verifier, request_id)
            reject_non_json_body(scope)

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_request_id)
