"""Audit and change feed: read from the event store itself, one tenant's slice of the log.

The tenant filter is in the SQL (an index on the tenant part of the originator id plus the
position), so a query never touches another tenant's events."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from pim.domain.entity import Entity
from pim.domain.ids import aggregate_id, entity_id_of
from pim.domain.registry import ACTIONS, ENTITY_TYPES, EVENT_TOPICS, topics_for
from pim.eventstore import EVENTS_TABLE, EventStore
from pim.queries.pages import InvalidQuery
from pim.queries.products import _uuid_param, datetime_param

_STATE_JSON = "convert_from(state, 'UTF8')::jsonb"


class AuditEntry(msgspec.Struct, kw_only=True):
    id: int
    position: int
    action: str
    entity_type: str
    entity_id: str
    entity_version: int
    actor: str
    actor_email: str | None
    org_id: str
    changes: dict[str, dict[str, Any]]
    occurred_at: datetime
    request_id: str


class AuditFilters(msgspec.Struct, frozen=True):
    entity_type: str | None = None
    entity_id: str | None = None
    action: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> AuditFilters:
        # Entries spell entity types in lower case and actions in upper case; a filter in the
        # other case means the same thing.
        entity_type = params.get("entity_type")
        entity_type = entity_type.lower() if entity_type is not None else None
        if entity_type is not None and entity_type not in ENTITY_TYPES:
            raise InvalidQuery("entity_type", f"must be one of {', '.join(sorted(ENTITY_TYPES))}")
        action = params.get("action")
        action = action.upper() if action is not None else None
        if action is not None and action not in ACTIONS:
            raise InvalidQuery("action", f"must be one of {', '.join(sorted(ACTIONS))}")
        actor = params.get("actor")
        if actor is not None and not 1 <= len(actor) <= 255:
            raise InvalidQuery("actor", "must be 1 to 255 characters")
        return cls(
            entity_type=entity_type,
            entity_id=str(_uuid_param("entity_id", params["entity_id"]))
            if "entity_id" in params
            else None,
            action=action,
            actor=actor,
            since=datetime_param("since", params["since"]) if "since" in params else None,
            until=datetime_param("until", params["until"]) if "until" in params else None,
        )


def changes_of(event: Any) -> dict[str, dict[str, Any]]:
    if isinstance(event, Entity.Created):
        return {
            k: {"from": None, "to": v} for k, v in event.fields.items() if v is not None and v != {}
        }
    if isinstance(event, Entity.Updated):
        return dict(event.changes)
    if isinstance(event, Entity.Deleted):
        return {
            k: {"from": v, "to": None} for k, v in event.fields.items() if v is not None and v != {}
        }
    return {}


def to_entry(
    store: EventStore, position: int, originator_id: str, version: int, topic: str, state: bytes
) -> AuditEntry:
    event = store.decode(originator_id, version, topic, state)
    entity_type, action = EVENT_TOPICS[topic]
    return AuditEntry(
        id=position,
        position=position,
        action=action,
        entity_type=entity_type,
        entity_id=entity_id_of(originator_id),
        entity_version=version,
        actor=event.actor,
        actor_email=event.actor_email,
        org_id=event.org_id,
        changes=changes_of(event),
        occurred_at=event.timestamp,
        request_id=event.request_id,
    )


def build_log_query(
    tenant_id: str,
    filters: AuditFilters,
    *,
    newest_first: bool,
    after: int | None,
    limit: int,
) -> tuple[sql.Composed, list[Any]]:
    """SQL for one tenant's entity events, filtered, keyset-paged by position."""
    topics = topics_for(entity_type=filters.entity_type, action=filters.action)
    where = [sql.SQL("split_part(originator_id, ':', 1) = %s"), sql.SQL("topic = ANY(%s)")]
    params: list[Any] = [tenant_id, topics]
    if after is not None:
        where.append(sql.SQL("notification_id < %s" if newest_first else "notification_id > %s"))
        params.append(after)
    if filters.entity_id is not None:
        where.append(sql.SQL("originator_id = %s"))
        params.append(aggregate_id(tenant_id, filters.entity_id))
    if filters.actor is not None:
        where.append(sql.SQL(f"{_STATE_JSON} ->> 'actor' = %s"))
        params.append(filters.actor)
    if filters.since is not None:
        where.append(sql.SQL(f"({_STATE_JSON} -> 'timestamp' ->> '_data_')::timestamptz >= %s"))
        params.append(filters.since)
    if filters.until is not None:
        where.append(sql.SQL(f"({_STATE_JSON} -> 'timestamp' ->> '_data_')::timestamptz <= %s"))
        params.append(filters.until)
    params.append(limit)
    query = sql.SQL(
        "SELECT notification_id, originator_id, originator_version, topic, state FROM {}"
        " WHERE {} ORDER BY (split_part(originator_id, ':', 1)), notification_id {} LIMIT %s"
    ).format(
        sql.Identifier(EVENTS_TABLE),
        sql.SQL(" AND ").join(where),
        sql.SQL("DESC" if newest_first else "ASC"),
    )
    return query, params


class AuditQueries:
    def __init__(self, pool: AsyncConnectionPool[AsyncConnection[Any]], store: EventStore) -> None:
        self.pool = pool
        self.store = store

    async def page(
        self,
        tenant_id: str,
        filters: AuditFilters,
        *,
        newest_first: bool,
        after: int | None,
        limit: int,
    ) -> tuple[list[AuditEntry], int | None]:
        """A page of entries and the position to continue from, if there may be more."""
        if after is not None and after < 0:
            raise InvalidQuery("cursor", "is not a cursor this service issued")
        query, params = build_log_query(
            tenant_id, filters, newest_first=newest_first, after=after, limit=limit + 1
        )
        async with self.pool.connection() as conn:
            cur = await conn.execute(query, params)
            rows = await cur.fetchall()
        entries = [to_entry(self.store, r[0], r[1], r[2], r[3], bytes(r[4])) for r in rows[:limit]]
        more = len(rows) > limit
        return entries, (entries[-1].position if more and entries else None)
