"""Webhooks and their deliveries in PostgreSQL.

The API side is async over the read pool; ``record_event`` is sync and runs on the caller's
connection, inside the caller's transaction, so a delivery exists exactly when the event it
announces was committed. Every query names the tenant."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import msgspec
import psycopg
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from pim.domain.errors import PreconditionFailed
from pim.infra.idempotency import Receipt, record_receipts_async
from pim.queries.pages import CreatedKey, keyset_page
from pim.webhooks.targets import shown

AsyncPool = AsyncConnectionPool[AsyncConnection[Any]]

EXPORT_COMPLETED = "export.completed"
BULK_JOB_COMPLETED = "bulk_job.completed"
BULK_JOB_FAILED = "bulk_job.failed"
EVENT_TYPES: tuple[str, ...] = (EXPORT_COMPLETED, BULK_JOB_COMPLETED, BULK_JOB_FAILED)


PENDING = "PENDING"
DELIVERED = "DELIVERED"
FAILED = "FAILED"


# A delivery never attempted this long after it was recorded has probably lost its message.
UNSENT_AFTER_S = 30
# A retried delivery waits at most the actor's max backoff (10 min) plus one attempt's time
# limit (1 min) between attempts; untouched for longer, its retry message was lost.
ABANDONED_AFTER_S = 12 * 60


class Webhook(msgspec.Struct, kw_only=True):
    """A webhook as the API shows it (never with its secret)."""

    id: UUID
    url: str
    events: list[str]
    version: int
    created_at: datetime
    updated_at: datetime


class CreatedWebhook(Webhook, kw_only=True):
    """The create response: the only time the secret is shown."""

    secret: str


class WebhookDelivery(msgspec.Struct, kw_only=True):
    """One event for one webhook: ``version`` is 1 when recorded, +1 per attempt."""

    id: UUID
    event_id: UUID
    event_type: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None


_WEBHOOK_COLUMNS = "id, url, events, version, created_at, COALESCE(updated_at, created_at)"
_DELIVERY_COLUMNS = (
    "id, event_id, event_type, status, attempts, last_status_code, last_error, attempts + 1,"
    " created_at, updated_at, delivered_at"
)


def _webhook(row: tuple[Any, ...]) -> Webhook:
    return Webhook(
        id=row[0],
        url=shown(row[1]),
        events=list(row[2]),
        version=row[3],
        created_at=row[4],
        updated_at=row[5],
    )


def _delivery(row: tuple[Any, ...]) -> WebhookDelivery:
    return WebhookDelivery(
        id=row[0],
        event_id=row[1],
        event_type=row[2],
        status=row[3],
        attempts=row[4],
        last_status_code=row[5],
        last_error=row[6],
        version=row[7],
        created_at=row[8],
        updated_at=row[9],
        delivered_at=row[10],
    )


def new_webhook(
    *, url: str, events: list[str], secret: str, webhook_id: UUID | None = None
) -> CreatedWebhook:
    """A webhook about to be registered, as its create response shows it."""
    now = datetime.now(UTC)
    return CreatedWebhook(
        id=webhook_id or uuid4(),
        url=shown(url),
        events=events,
        version=1,
        created_at=now,
        updated_at=now,
        secret=secret,
    )


async def create_webhook(
    pool: AsyncPool,
    tenant_id: str,
    *,
    url: str,
    events: list[str],
    secret: str,
    created_by: str,
    webhook_id: UUID | None = None,
    answer: Callable[[dict[str, Any]], Receipt] | None = None,
) -> CreatedWebhook:
    """Register a webhook; ``answer`` makes the idempotent request's answer from it, which
    is recorded in the same transaction."""
    hook = new_webhook(url=url, events=events, secret=secret, webhook_id=webhook_id)
    async with pool.connection() as conn, conn.transaction():
        if answer is not None:
            await record_receipts_async(conn, [answer(msgspec.to_builtins(hook))])
        await conn.execute(
            "INSERT INTO webhooks (tenant_id, id, url, events, secret, created_by, created_at,"
            " updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                tenant_id,
                hook.id,
                url,
                hook.events,
                hook.secret,
                created_by,
                hook.created_at,
                hook.updated_at,
            ),
        )
    return hook


async def list_webhooks(
    pool: AsyncPool, tenant_id: str, *, limit: int, cursor: str | None
) -> tuple[list[Webhook], str | None]:
    """The tenant's webhooks oldest first, and the cursor of the next page."""
    rows, more = await keyset_page(
        pool,
        sql.SQL(_WEBHOOK_COLUMNS),
        sql.SQL("webhooks"),
        [sql.SQL("tenant_id = %s")],
        [tenant_id],
        CreatedKey,
        limit=limit,
        cursor=cursor,
    )
    return [_webhook(r) for r in rows], more


async def get_webhook(pool: AsyncPool, tenant_id: str, webhook_id: UUID) -> Webhook | None:
    async with pool.connection() as conn:
        cur = await conn.execute(
            f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE tenant_id = %s AND id = %s",
            (tenant_id, webhook_id),
        )
        row = await cur.fetchone()
    return _webhook(row) if row else None


async def delete_webhook(
    pool: AsyncPool, tenant_id: str, webhook_id: UUID, *, expected_version: int | None = None
) -> bool:
    """Remove the webhook and its deliveries; False when the tenant has no such webhook.
    PreconditionFailed when ``expected_version`` (If-Match) is not its version."""
    async with pool.connection() as conn, conn.transaction():
        cur = await conn.execute(
            "DELETE FROM webhooks WHERE tenant_id = %s AND id = %s RETURNING version",
            (tenant_id, webhook_id),
        )
        row = await cur.fetchone()
        if row is None:
            return False
        if expected_version is not None and expected_version != row[0]:
            # raising rolls the transaction back: the webhook stays
            raise PreconditionFailed(f"webhook is at version {row[0]}, not {expected_version}")
        await conn.execute(
            "DELETE FROM webhook_deliveries WHERE tenant_id = %s AND webhook_id = %s",
            (tenant_id, webhook_id),
        )
    return True


async def list_deliveries(
    pool: AsyncPool, tenant_id: str, webhook_id: UUID, *, limit: int, cursor: str | None
) -> tuple[list[WebhookDelivery], str | None]:
    """A webhook's deliveries oldest first, like every list."""
    rows, more = await keyset_page(
        pool,
        sql.SQL(_DELIVERY_COLUMNS),
        sql.SQL("webhook_deliveries"),
        [sql.SQL("tenant_id = %s AND webhook_id = %s")],
        [tenant_id, webhook_id],
        CreatedKey,
        limit=limit,
        cursor=cursor,
    )
    return [_delivery(r) for r in rows], more


def stale_deliveries(
    conn: psycopg.Connection[Any],
    *,
    unsent_after_s: float = UNSENT_AFTER_S,
    abandoned_after_s: float = ABANDONED_AFTER_S,
    limit: int = 1000,
) -> list[str]:
    """PENDING deliveries whose message was probably lost, to queue again (sync, any tenant).

    Never attempted and older than ``unsent_after_s``, or not touched for ``abandoned_after_s``
    (longer than any retry backoff): a delivery still inside its retry schedule is left alone,
    so sweeping does not compress the backoff or run attempts side by side."""
    cur = conn.execute(
        "SELECT id FROM webhook_deliveries WHERE status = 'PENDING' AND ("
        " (attempts = 0 AND updated_at < now() - make_interval(secs => %s))"
        " OR updated_at < now() - make_interval(secs => %s))"
        " ORDER BY updated_at LIMIT %s",
        (unsent_after_s, abandoned_after_s, limit),
    )
    return [str(row[0]) for row in cur.fetchall()]


def envelope(event_type: str, data: dict[str, Any]) -> tuple[UUID, bytes]:
    """The event's id and the exact JSON body every subscriber receives (encoded once)."""
    event_id = uuid4()
    body = msgspec.json.encode(
        {
            "id": str(event_id),
            "type": event_type,
            "created_at": datetime.now(UTC),
            "data": data,
        }
    )
    return event_id, body


def record_event(
    conn: psycopg.Connection[Any], tenant_id: str, event_type: str, data: dict[str, Any]
) -> list[str]:
    """One PENDING delivery per webhook of the tenant subscribed to ``event_type``, written on
    the caller's connection (and transaction). Returns the delivery ids: the caller enqueues
    ``deliver_webhook`` for each once its transaction has committed."""
    event_id, body = envelope(event_type, data)
    cur = conn.execute(
        "INSERT INTO webhook_deliveries"
        " (tenant_id, id, webhook_id, event_id, event_type, payload, status, attempts)"
        " SELECT w.tenant_id, gen_random_uuid(), w.id, %(event_id)s, %(type)s, %(payload)s,"
        " 'PENDING', 0"
        " FROM webhooks w WHERE w.tenant_id = %(tenant)s AND %(type)s = ANY (w.events)"
        " ORDER BY w.created_at, w.id"
        " RETURNING id",
        {"event_id": event_id, "type": event_type, "payload": body, "tenant": tenant_id},
    )
    return [str(row[0]) for row in cur.fetchall()]
