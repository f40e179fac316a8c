"""Audit: /api/v1/pim/audit, newest first, read from the event store itself."""

from __future__ import annotations

import msgspec
from litestar import Controller, Response, get

from pim.api.http import AnyRequest, context_of, next_link, query_params, reads_of
from pim.api.openapi import read_operation
from pim.queries.audit import AuditEntry, AuditFilters
from pim.queries.pages import InvalidQuery, decode_cursor, encode_cursor, parse_limit


class PositionKey(msgspec.Struct, array_like=True, frozen=True):
    position: int


def parse_position_cursor(value: str | None) -> int | None:
    if value is None:
        return None
    position = decode_cursor(value, PositionKey).position
    if position < 0:
        raise InvalidQuery("cursor", "is not a cursor this service issued")
    return position


class AuditController(Controller):
    path = "/audit"
    tags = ["Audit"]

    @get("/", **read_operation("listAuditEntries", "The tenant's events, newest first"))
    async def list_audit(self, request: AnyRequest) -> Response[list[AuditEntry]]:
        ctx = context_of(request)
        params = query_params(request)
        entries, more_before = await reads_of(request).audit.page(
            ctx.tenant_id,
            AuditFilters.parse(params),
            newest_first=True,
            after=parse_position_cursor(params.get("cursor")),
            limit=parse_limit(params.get("limit")),
        )
        cursor = encode_cursor(PositionKey(more_before)) if more_before is not None else None
        return Response(entries, headers=next_link(request, cursor))
