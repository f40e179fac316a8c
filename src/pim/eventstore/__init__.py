"""The event store: two logs in PostgreSQL (catalog and jobs), how appends are ordered, how
the log is decoded, snapshots, and the store that loads and saves aggregates.

- ``applications``: the two eventsourcing applications and their tables;
- ``recorders``: how events are appended (per-tenant order for the catalog);
- ``transcoding``: the stored format, decoded with msgspec;
- ``snapshots``: cached states (a replay shortcut, never the truth);
- ``store``: ``EventStore``, the only door to a log."""

from eventsourcing.persistence import IntegrityError

from pim.eventstore.applications import (
    EVENTS_TABLE,
    HEADS_TABLE,
    JOBS_EVENTS_TABLE,
    CatalogApplication,
    JobsApplication,
)
from pim.eventstore.recorders import PARTITIONS, tenant_partition
from pim.eventstore.snapshots import (
    SNAPSHOT_EVERY,
    StateSnapshot,
    snapshot_schema,
)
from pim.eventstore.store import EventStore
from pim.eventstore.transcoding import FastJSONTranscoder

__all__ = [
    "EVENTS_TABLE",
    "HEADS_TABLE",
    "JOBS_EVENTS_TABLE",
    "PARTITIONS",
    "SNAPSHOT_EVERY",
    "CatalogApplication",
    "EventStore",
    "FastJSONTranscoder",
    "IntegrityError",
    "JobsApplication",
    "StateSnapshot",  # also the topic of snapshots stored before the package existed
    "snapshot_schema",
    "tenant_partition",
]
