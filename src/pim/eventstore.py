"""The catalog event store: one eventsourcing application holding every catalog aggregate,
so a command that touches several aggregates saves them in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.postgres import PostgresAggregateRecorder, PostgresApplicationRecorder
from psycopg import sql

from pim.domain.context import Actor
from pim.domain.entity import Entity
from pim.domain.errors import NotFound
from pim.domain.ids import aggregate_id

EVENTS_TABLE = "catalog_events"

TEntity = TypeVar("TEntity", bound=Entity)

__all__ = [
    "EVENTS_TABLE",
    "JOBS_EVENTS_TABLE",
    "CatalogApplication",
    "CatalogStore",
    "IntegrityError",
    "JobsApplication",
]


class CatalogRecorder(PostgresApplicationRecorder):
    """eventsourcing's recorder, inserting without psycopg pipeline mode.

    Measured here (one thread, product-sized events): pipeline mode costs ~2.7 ms wall and
    ~0.8 ms CPU per save, a plain transaction ~1.6 ms and ~0.5 ms. The semantics are the same:
    the events-table lock is taken before the insert, so positions commit in order."""

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if not stored_events:
            return []
        lock_and_notify = sql.SQL(
            "SET LOCAL lock_timeout = '{timeout}s'; LOCK TABLE {schema}.{table} IN EXCLUSIVE MODE;"
            " NOTIFY {channel}"
        ).format(
            timeout=sql.SQL(str(int(self.datastore.lock_timeout))),
            schema=sql.Identifier(self.datastore.schema),
            table=sql.Identifier(self.events_table_name),
            channel=sql.Identifier(self.channel_name),
        )
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.execute(lock_and_notify)
            PostgresAggregateRecorder._insert_stored_events(self, curs, stored_events)
            return [row["notification_id"] for row in curs.fetchall()]


class CatalogApplication(Application[str]):
    name = "catalog"  # tables are named catalog_events


class JobsApplication(Application[str]):
    name = "jobs"  # tables are named jobs_events: job progress never waits on catalog writes


JOBS_EVENTS_TABLE = "jobs_events"


class CatalogStore:
    """Loads and saves tenant-scoped aggregates; the only door to the catalog log."""

    def __init__(self, app: Application[str]) -> None:
        self.app = app

    def load(
        self, cls: type[TEntity], actor: Actor, entity_id: str, *, version: int | None = None
    ) -> TEntity:
        """The tenant's live entity, or NotFound: another tenant's id is simply not there."""
        try:
            aggregate: Any = self.app.repository.get(
                aggregate_id(actor.tenant_id, entity_id), version=version
            )
        except AggregateNotFoundError:
            raise NotFound(f"{cls.entity_type} not found") from None
        if not isinstance(aggregate, cls) or aggregate.deleted:
            raise NotFound(f"{cls.entity_type} not found")
        return aggregate

    def find(self, full_id: str) -> Any | None:
        """Any aggregate by its full id (tenant prefix included), or None."""
        try:
            return self.app.repository.get(full_id)
        except AggregateNotFoundError:
            return None

    def save(self, *aggregates: Any) -> int | None:
        """Save atomically; the log position of the last event, or None if nothing changed."""
        recordings = self.app.save(*aggregates)
        if not recordings:
            return None
        return max(r.notification.id for r in recordings)

    def decode(self, originator_id: str, version: int, topic: str, state: bytes) -> Any:
        return self.app.mapper.to_domain_event(
            StoredEvent(
                originator_id=originator_id, originator_version=version, topic=topic, state=state
            )
        )
