"""Idempotency keys in PostgreSQL: claims, and the receipts writes record.

A request with an ``Idempotency-Key`` first *claims* the key: a row, in flight, holding a
fresh claim token and a short lease. The write the request makes then records its answer
(the *receipt*: status, headers, body) on that row **in the write's own transaction**, and
only while the row still holds its claim. So after any crash (the service's, or PostgreSQL's
between the commit and the answer) a retry with the same key finds either the committed
answer, replayed as it was, or no write at all; and a request whose claim was taken over
(its lease ran out) cannot write any more. Answers of requests that write nothing (a refusal,
a no-op) are recorded after the fact."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import msgspec

RETENTION = "24 hours"
# How long a claim in flight keeps the key from another request. Short: a request that died
# (its process, or PostgreSQL under it) frees its key soon, and a request still running past
# it can no longer write (its claim is gone), so the key never makes two writes.
LEASE_S = 10


class ClaimLost(Exception):
    """The request's claim on its Idempotency-Key was taken over: it must not write."""


@dataclass(frozen=True, slots=True)
class Claim:
    tenant_id: str
    key: str
    token: str  # a UUID, fresh per claim


@dataclass(frozen=True, slots=True)
class Receipt:
    """The answer a write gives, recorded on its key's row by the write's transaction."""

    claim: Claim
    status: int
    headers: list[list[str]]  # [name, value], latin-1 text
    body: bytes


# Records receipts whose claims are still held; returns one row per receipt recorded.
RECORD_RECEIPTS = """
    UPDATE idempotency_keys AS k
       SET state = 'done', status_code = r.status, response_headers = r.headers,
           response_body = decode(r.body, 'base64')
      FROM jsonb_to_recordset(%s::jsonb)
           AS r(tenant_id uuid, key text, claim uuid, status int, headers jsonb, body text)
     WHERE k.tenant_id = r.tenant_id AND k.key = r.key AND k.claim = r.claim
       AND k.state = 'in_flight'
 RETURNING k.key
"""

_encode = msgspec.json.Encoder().encode


def receipts_param(receipts: list[Receipt]) -> str:
    return _encode(
        [
            {
                "tenant_id": r.claim.tenant_id,
                "key": r.claim.key,
                "claim": r.claim.token,
                "status": r.status,
                "headers": r.headers,
                "body": base64.b64encode(r.body).decode(),
            }
            for r in receipts
        ]
    ).decode()


def record_receipts(conn: Any, receipts: list[Receipt]) -> None:
    """Record receipts in the caller's transaction (sync connection); ClaimLost when one
    claim is no longer held (the caller's transaction must then roll back)."""
    if not receipts:
        return
    rows = conn.execute(RECORD_RECEIPTS, (receipts_param(receipts),)).fetchall()
    if len(rows) != len(receipts):
        raise ClaimLost("the Idempotency-Key was claimed by another request")


async def record_receipts_async(conn: Any, receipts: list[Receipt]) -> None:
    """``record_receipts`` on an async connection."""
    if not receipts:
        return
    cur = await conn.execute(RECORD_RECEIPTS, (receipts_param(receipts),))
    if len(await cur.fetchall()) != len(receipts):
        raise ClaimLost("the Idempotency-Key was claimed by another request")
