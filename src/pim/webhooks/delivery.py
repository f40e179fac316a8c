"""One attempt at delivering one webhook delivery: POST the stored body, signed, and record
the outcome. Called by the ``deliver_webhook`` actor, which dramatiq retries with backoff
whenever this raises; the attempt that reaches MAX_ATTEMPTS marks the delivery FAILED instead.

Idempotent: a delivery that is no longer PENDING, or whose webhook was deleted, is skipped."""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any
from uuid import UUID

import dramatiq
import httpx
import psycopg

from pim.jobs.broker import WEBHOOK_MAX_RETRIES
from pim.webhooks.store import DELIVERED, FAILED, PENDING
from pim.webhooks.targets import UnsafeTarget, resolve_target

log = logging.getLogger(__name__)

# The first attempt plus every dramatiq retry.
MAX_ATTEMPTS = 1 + WEBHOOK_MAX_RETRIES
USER_AGENT = "pim-webhooks/1"
MAX_ERROR_CHARS = 500


class DeliveryFailed(dramatiq.Retry):
    """This attempt failed and another will follow (a ``Retry``: dramatiq backs off and tries
    again without logging a traceback)."""


def signature(secret: str, body: bytes) -> str:
    """The ``X-PIM-Signature`` value: ``sha256=<hex HMAC-SHA256 of the raw body>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _request(
    url: str, addresses: list[str], headers: dict[str, str]
) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
    """Aim the request at a vetted address (when there is one) while keeping the name for
    the Host header and TLS (SNI and certificate check), so DNS cannot change in between."""
    target = httpx.URL(url)
    if not addresses:
        return target, headers, {}
    pinned = target.copy_with(host=addresses[0])
    extensions: dict[str, Any] = {}
    if target.scheme == "https":
        extensions["sni_hostname"] = target.host
    return pinned, {**headers, "Host": target.netloc.decode("ascii")}, extensions


def _post(
    url: str, body: bytes, headers: dict[str, str], *, allow_private: bool, timeout_s: float
) -> int:
    """POST and return the status code (the response body is never read)."""
    addresses = resolve_target(url, allow_private=allow_private)
    target, headers, extensions = _request(url, addresses, headers)
    with (
        httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False) as client,
        client.stream(
            "POST", target, content=body, headers=headers, extensions=extensions
        ) as response,
    ):
        return response.status_code


def deliver(
    database_url: str, delivery_id: str, *, allow_private: bool, timeout_s: float = 10.0
) -> None:
    """Attempt delivery ``delivery_id``. Raises DeliveryFailed when the attempt failed and
    attempts remain; returns otherwise (delivered, failed for good, or nothing to do)."""
    try:
        did = UUID(delivery_id)
    except ValueError:
        log.warning("webhook delivery id %r is not a UUID; skipped", delivery_id)
        return
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT d.tenant_id, d.status, d.event_type, d.payload, w.url, w.secret"
            " FROM webhook_deliveries d"
            " LEFT JOIN webhooks w ON w.tenant_id = d.tenant_id AND w.id = d.webhook_id"
            " WHERE d.id = %s",
            (did,),
        ).fetchone()
        if row is None:
            log.info("webhook delivery %s no longer exists; skipped", delivery_id)
            return
        tenant_id, status, event_type, payload, url, secret = row
        if status != PENDING:
            return  # delivered already (or given up on): at-least-once redelivery
        if url is None:
            log.info("webhook of delivery %s was deleted; skipped", delivery_id)
            return
        body = bytes(payload)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-PIM-Event": event_type,
            "X-PIM-Delivery": str(did),
            "X-PIM-Signature": signature(secret, body),
        }
        status_code: int | None = None
        error: str | None = None
        try:
            status_code = _post(
                url, body, headers, allow_private=allow_private, timeout_s=timeout_s
            )
        except UnsafeTarget as exc:
            error = f"target refused: {exc}"
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if status_code is not None and 200 <= status_code < 300:
            conn.execute(
                "UPDATE webhook_deliveries SET status = %s, attempts = attempts + 1,"
                " last_status_code = %s, last_error = NULL, delivered_at = now(),"
                " updated_at = now()"
                " WHERE tenant_id = %s AND id = %s AND status = %s",
                (DELIVERED, status_code, tenant_id, did, PENDING),
            )
            return
        if error is None:
            error = f"HTTP {status_code}" + (
                " (redirects are not followed)" if status_code and 300 <= status_code < 400 else ""
            )
        after = conn.execute(
            "UPDATE webhook_deliveries SET attempts = attempts + 1,"
            " last_status_code = %s, last_error = %s, updated_at = now(),"
            " status = CASE WHEN attempts + 1 >= %s THEN %s ELSE status END"
            " WHERE tenant_id = %s AND id = %s AND status = %s"
            " RETURNING status, attempts",
            (status_code, error[:MAX_ERROR_CHARS], MAX_ATTEMPTS, FAILED, tenant_id, did, PENDING),
        ).fetchone()
    if after is None:
        return  # settled meanwhile by a concurrent attempt
    if after[0] == FAILED:
        log.warning(
            "webhook delivery %s failed for good after %s attempts: %s",
            delivery_id,
            after[1],
            error,
        )
        return
    raise DeliveryFailed(f"webhook delivery {delivery_id} attempt {after[1]} failed: {error}")
