"""Aggregate ids are ``"{tenant_id}:{uuid}"``: a request can only ever name its own tenant's
aggregates, whatever id it sends, because the tenant part comes from the verified token."""

from __future__ import annotations

from uuid import UUID

SEPARATOR = ":"


def aggregate_id(tenant_id: str, entity_id: UUID | str) -> str:
    return f"{tenant_id}{SEPARATOR}{entity_id}"


def entity_id_of(aggregate_id_: str) -> str:
    """The public (plain UUID) id of an entity aggregate."""
    return aggregate_id_.split(SEPARATOR, 1)[1]


def tenant_of(aggregate_id_: str) -> str:
    return aggregate_id_.split(SEPARATOR, 1)[0]


def parse_uuid(value: str) -> UUID | None:
    """A canonical UUID from a path or header, or None when it is not one."""
    try:
        return UUID(value)
    except (ValueError, AttributeError, TypeError):
        return None
