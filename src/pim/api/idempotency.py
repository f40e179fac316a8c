"""Idempotency-Key on every POST, in one ASGI middleware (no per-resource copies).

Same key + same request within 24 h -> the first response replayed (2xx and 4xx are kept; a 5xx
is forgotten so a retry can succeed); same key with another body or path -> 422; while the first
is still running -> 409. Keys are per tenant and kept in PostgreSQL.

Crash safety (pim.infra.idempotency): the request claims its key (a fresh claim token and a
short lease); a write records its answer in its own transaction while it holds the claim
(the route marks the request ``recorded``); anything else is recorded here after the answer.
After a crash between a write's commit and its answer, a retry replays the committed answer;
a request that died before writing frees its key when its lease ends, and could not write
after that anyway."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
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
from pim.infra.idempotency import LEASE_S, RETENTION, Claim

log = logging.getLogger(__name__)

MAX_KEY_LENGTH = 255
# Headers of an answer that belong to one exchange, not to the answer (never replayed).
NOT_REPLAYED_HEADERS = frozenset({b"x-request-id", b"content-length", b"date", b"server"})
# Scope state: the request's claim, and whether its write recorded the answer.
CLAIM = "idempotency_claim"
RECORDED = "idempotency_recorded"
FORGET_RETRY_S = 1.0

_CLAIM = f"""
INSERT INTO idempotency_keys (tenant_id, key, fingerprint, state, locked_until, claim)
VALUES (%s, %s, %s, 'in_flight', now() + interval '{LEASE_S} seconds', %s)
ON CONFLICT (tenant_id, key) DO UPDATE
SET fingerprint = EXCLUDED.fingerprint, state = 'in_flight', status_code = NULL,
    response_headers = NULL, response_body = NULL, created_at = now(),
    locked_until = EXCLUDED.locked_until, claim = EXCLUDED.claim
WHERE idempotency_keys.created_at < now() - interval '{RETENTION}'
   OR (idempotency_keys.state = 'in_flight' AND idempotency_keys.locked_until < now())
RETURNING 1
"""


def claim_of(scope: Scope) -> Claim | None:
    """The request's claim on its Idempotency-Key, if it sent one."""
    found = scope.get("state", {}).get(CLAIM)
    return found if isinstance(found, Claim) else None


def mark_recorded(scope: Scope) -> None:
    """The request's write recorded its answer (in the write's transaction)."""
    scope.setdefault("state", {})[RECORDED] = True


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.pool: AsyncConnectionPool[AsyncConnection[Any]] | None = None
        # Claims a failed request could not free (the database was down): freed later.
        self._unfreed: set[Claim] = set()
        self._freeing: asyncio.Task[None] | None = None

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
        claim = Claim(context.tenant_id, key, str(uuid.uuid4()))
        if not await self._claim(claim, fingerprint):
            await self._replay_or_refuse(claim, fingerprint, send)
            return
        scope.setdefault("state", {})[CLAIM] = claim

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
            await self._forget(claim)
            raise
        if captured["status"] >= 500:
            await self._forget(claim)
        elif not scope["state"].get(RECORDED):
            await self._record(claim, captured)

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

    async def _claim(self, claim: Claim, fingerprint: str) -> bool:
        async with self._pool().connection() as conn:
            cur = await conn.execute(_CLAIM, (claim.tenant_id, claim.key, fingerprint, claim.token))
            return await cur.fetchone() is not None

    async def _record(self, claim: Claim, captured: dict[str, Any]) -> None:
        """The answer of a request that wrote nothing (a refusal, a no-op), while it still
        holds its claim. Best effort: the answer was sent; if this fails, the key frees
        itself when its lease ends and a retry runs the request again (it writes nothing)."""
        headers = [
            [k.decode("latin-1"), v.decode("latin-1")]
            for k, v in captured["headers"]
            if k.lower() not in NOT_REPLAYED_HEADERS
        ]
        try:
            async with self._pool().connection() as conn:
                await conn.execute(
                    "UPDATE idempotency_keys SET state = 'done', status_code = %s,"
                    " response_headers = %s, response_body = %s"
                    " WHERE tenant_id = %s AND key = %s AND claim = %s AND state = 'in_flight'",
                    (
                        captured["status"],
                        msgspec.json.encode(headers).decode(),
                        b"".join(captured["body"]),
                        claim.tenant_id,
                        claim.key,
                        claim.token,
                    ),
                )
        except Exception as exc:
            log.warning("answer for Idempotency-Key not recorded: %s", exc)

    async def _forget(self, claim: Claim) -> None:
        """Free the key of a request that failed (unless its write recorded an answer); if
        the database is down, keep trying in the background."""
        try:
            await self._free(claim)
        except Exception:
            self._unfreed.add(claim)
            if self._freeing is None or self._freeing.done():
                self._freeing = asyncio.create_task(self._free_later())

    async def _free(self, claim: Claim) -> None:
        async with self._pool().connection() as conn:
            await conn.execute(
                "DELETE FROM idempotency_keys WHERE tenant_id = %s AND key = %s"
                " AND claim = %s AND state = 'in_flight'",
                (claim.tenant_id, claim.key, claim.token),
            )

    async def _free_later(self) -> None:
        while self._unfreed:
            await asyncio.sleep(FORGET_RETRY_S)
            for claim in list(self._unfreed):
                with contextlib.suppress(Exception):
                    await self._free(claim)
                    self._unfreed.discard(claim)

    async def _replay_or_refuse(self, claim: Claim, fingerprint: str, send: Send) -> None:
        async with self._pool().connection() as conn:
            cur = await conn.execute(
                "SELECT fingerprint, state, status_code, response_headers, response_body"
                " FROM idempotency_keys WHERE tenant_id = %s AND key = %s",
                (claim.tenant_id, claim.key),
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
                headers={"Retry-After": str(LEASE_S)},
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
