"""Idempotency-Key on every POST, in one ASGI middleware (no per-resource copies).

Same key + same request within 24 h -> the first response replayed (2xx and 4xx are kept; a 5xx
is forgotten so a retry can succeed); same key with another body or path -> 422; while the first
is still running -> 409. Keys are per tenant and kept in PostgreSQL, so they survive restarts."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Message,
    Receive,
    ReceiveMessage,
    Scope,
    Send,
)
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from pim.api.bodies import MAX_BODY_BYTES
from pim.api.identity import RequestContext, header
from pim.api.problems import ApiError

IDEMPOTENCY_DDL = [
    """CREATE TABLE IF NOT EXISTS idempotency_keys (
        tenant_id uuid NOT NULL,
        key text NOT NULL,
        fingerprint text NOT NULL,
        state text NOT NULL,
        status_code integer,
        response_headers jsonb,
        response_body bytea,
        created_at timestamptz NOT NULL DEFAULT now(),
        locked_until timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, key)
    )""",
]

MAX_KEY_LENGTH = 255
RETENTION = "24 hours"
# A request that has not finished after this long is presumed dead (its process crashed).
IN_FLIGHT_LEASE = "5 minutes"
_NOT_REPLAYED_HEADERS = frozenset({b"x-request-id", b"content-length", b"date", b"server"})

_CLAIM = f"""
INSERT INTO idempotency_keys (tenant_id, key, fingerprint, state, locked_until)
VALUES (%s, %s, %s, 'in_flight', now() + interval '{IN_FLIGHT_LEASE}')
ON CONFLICT (tenant_id, key) DO UPDATE
SET fingerprint = EXCLUDED.fingerprint, state = 'in_flight', status_code = NULL,
    response_headers = NULL, response_body = NULL, created_at = now(),
    locked_until = EXCLUDED.locked_until
WHERE idempotency_keys.created_at < now() - interval '{RETENTION}'
   OR (idempotency_keys.state = 'in_flight' AND idempotency_keys.locked_until < now())
RETURNING 1
"""


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.pool: AsyncConnectionPool[AsyncConnection[Any]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = header(scope, b"idempotency-key") if scope["type"] == ScopeType.HTTP else None
        context = scope.get("user")
        if key is None or scope.get("method") != "POST" or not isinstance(context, RequestContext):
            await self.app(scope, receive, send)
            return
        if not 1 <= len(key) <= MAX_KEY_LENGTH:
            raise ApiError(
                400, "Idempotency-Key must be 1 to 255 characters", slug="invalid-header"
            )
        if self.pool is None:
            self.pool = scope["app"].state.reads.pool
        body = await self._read_body(receive)
        fingerprint = hashlib.sha256(
            b"\n".join([scope["path"].encode(), scope.get("query_string", b""), body])
        ).hexdigest()
        tenant = context.tenant_id
        if not await self._claim(tenant, key, fingerprint):
            await self._replay_or_refuse(tenant, key, fingerprint, send)
            return

        captured: dict[str, Any] = {"status": 500, "headers": [], "body": []}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                captured["body"].append(message.get("body", b""))
            await send(message)

        sent = False

        async def replay_body() -> ReceiveMessage:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        try:
            await self.app(scope, replay_body, capture)
        except BaseException:
            await self._forget(tenant, key)
            raise
        if captured["status"] >= 500:
            await self._forget(tenant, key)
            return
        headers = [
            [k.decode("latin-1"), v.decode("latin-1")]
            for k, v in captured["headers"]
            if k.lower() not in _NOT_REPLAYED_HEADERS
        ]
        async with self._pool().connection() as conn:
            await conn.execute(
                "UPDATE idempotency_keys SET state = 'done', status_code = %s,"
                " response_headers = %s, response_body = %s WHERE tenant_id = %s AND key = %s",
                (
                    captured["status"],
                    msgspec.json.encode(headers).decode(),
                    b"".join(captured["body"]),
                    tenant,
                    key,
                ),
            )

    def _pool(self) -> AsyncConnectionPool[AsyncConnection[Any]]:
        assert self.pool is not None
        return self.pool

    @staticmethod
    async def _read_body(receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk: bytes = message.get("body", b"")  # type: ignore[assignment]
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise ApiError(413, "request body exceeds the 10 MiB limit")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _claim(self, tenant: str, key: str, fingerprint: str) -> bool:
        async with self._pool().connection() as conn:
            cur = await conn.execute(_CLAIM, (tenant, key, fingerprint))
            return await cur.fetchone() is not None

    async def _forget(self, tenant: str, key: str) -> None:
        async with self._pool().connection() as conn:
            await conn.execute(
                "DELETE FROM idempotency_keys WHERE tenant_id = %s AND key = %s AND state ="
                " 'in_flight'",
                (tenant, key),
            )

    async def _replay_or_refuse(self, tenant: str, key: str, fingerprint: str, send: Send) -> None:
        async with self._pool().connection() as conn:
            cur = await conn.execute(
                "SELECT fingerprint, state, status_code, response_headers, response_body"
                " FROM idempotency_keys WHERE tenant_id = %s AND key = %s",
                (tenant, key),
            )
            row = await cur.fetchone()
        if row is None:  # expired and removed between our claim and this read: rare
            raise ApiError(409, "this Idempotency-Key is being reused; retry", slug="conflict")
        stored_fingerprint, state, status, headers, response_body = row
        if stored_fingerprint != fingerprint:
            raise ApiError(
                422,
                "this Idempotency-Key was already used with a different request",
                slug="idempotency-key-reused",
            )
        if state != "done":
            raise ApiError(
                409,
                "a request with this Idempotency-Key is still in progress",
                slug="idempotency-key-in-flight",
            )
        raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        raw_headers.append((b"idempotent-replayed", b"true"))
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": int(status),
            "headers": raw_headers,
        }
        await send(start)
        end: HTTPResponseBodyEvent = {
            "type": "http.response.body",
            "body": bytes(response_body),
            "more_body": False,
        }
        await send(end)
