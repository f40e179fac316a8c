"""The catalog event store: one eventsourcing application holding every catalog aggregate,
so a command that touches several aggregates saves them in one transaction."""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

import msgspec
from eventsourcing.application import Application
from eventsourcing.domain import CanSnapshotAggregate, MetaDomainEvent
from eventsourcing.persistence import IntegrityError, JSONTranscoder, StoredEvent, Transcoder
from eventsourcing.postgres import PostgresAggregateRecorder, PostgresApplicationRecorder
from eventsourcing.utils import get_topic
from psycopg import sql
from psycopg.rows import tuple_row

from pim.domain.context import Actor
from pim.domain.entity import CatalogEvent, Entity
from pim.domain.errors import NotFound
from pim.domain.ids import aggregate_id
from pim.infra.group_commit import GroupCommit

EVENTS_TABLE = "catalog_events"
SNAPSHOTS_TABLE = "catalog_snapshots"

# An aggregate that opts in (class attribute ``snapshot = True``) gets its state stored
# whenever its version reaches a multiple of this: a load then replays at most this many
# events, however long its history (a variant repriced every month for years).
SNAPSHOT_EVERY = 32

# Bump when what an aggregate's *state* holds changes without any event class changing (a
# new attribute computed in ``apply``): snapshots taken before are then ignored.
SNAPSHOT_STATE_VERSION = 1

SNAPSHOTS_DDL: list[str] = [
    f"""CREATE TABLE IF NOT EXISTS {SNAPSHOTS_TABLE} (
        originator_id text PRIMARY KEY,
        originator_version integer NOT NULL,
        topic text NOT NULL,
        state bytea NOT NULL,
        schema text NOT NULL
    )""",
]


@functools.cache
def snapshot_schema() -> str:
    """A fingerprint of everything a snapshot's meaning depends on: each snapshotted
    aggregate class and the class_version of each of its event classes (an upcaster added
    to any of them bumps one), and SNAPSHOT_STATE_VERSION. A snapshot taken under another
    fingerprint is ignored (the aggregate is replayed), so no deploy has to purge them."""
    import pim.domain.registry  # noqa: F401  (every entity class, so the walk sees them all)
    from pim.domain.indexes import Children, Turnstile

    def subclasses(cls: type[Any]) -> list[type[Any]]:
        return [cls] + [d for c in cls.__subclasses__() for d in subclasses(c)]

    lines = {f"state:{SNAPSHOT_STATE_VERSION}"}
    aggregates: list[type[Any]] = [*subclasses(Entity), Children, Turnstile]
    for aggregate in aggregates:
        lines.add(f"{get_topic(aggregate)}:{getattr(aggregate, 'class_version', 1)}")
        for name in dir(aggregate):
            member = getattr(aggregate, name)
            if isinstance(member, type) and issubclass(member, CatalogEvent):
                lines.add(f"{get_topic(member)}:{getattr(member, 'class_version', 1)}")
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()[:16]


log = logging.getLogger(__name__)

TEntity = TypeVar("TEntity", bound=Entity)

__all__ = [
    "EVENTS_TABLE",
    "JOBS_EVENTS_TABLE",
    "CatalogApplication",
    "CatalogStore",
    "IntegrityError",
    "JobsApplication",
]


# From this many events on, a save uses COPY instead of INSERT ... unnest(...).
COPY_THRESHOLD = 200


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
            if len(stored_events) < COPY_THRESHOLD:
                PostgresAggregateRecorder._insert_stored_events(self, curs, stored_events)
                return [row["notification_id"] for row in curs.fetchall()]
            return self._copy_events(curs, stored_events)

    def _copy_events(self, curs: Any, stored_events: Sequence[StoredEvent]) -> list[int]:
        """Binary COPY for big batches (bulk jobs). Under the table lock nobody else draws
        from the sequence, so this batch's positions are the last N values."""
        table = sql.Identifier(self.datastore.schema, self.events_table_name)
        with curs.copy(
            sql.SQL(
                "COPY {} (originator_id, originator_version, topic, state) FROM STDIN"
                " (FORMAT BINARY)"
            ).format(table)
        ) as copy:
            copy.set_types(["text", "int8", "text", "bytea"])
            for event in stored_events:
                copy.write_row(
                    (event.originator_id, event.originator_version, event.topic, event.state)
                )
        curs.execute(
            "SELECT currval(pg_get_serial_sequence(%s, 'notification_id'))",
            (f"{self.datastore.schema}.{self.events_table_name}",),
        )
        last = int(curs.fetchone()["currval"])
        return list(range(last - len(stored_events) + 1, last + 1))


_decode_json = msgspec.json.Decoder().decode
_encode_json = msgspec.json.Encoder().encode


class FastJSONTranscoder(JSONTranscoder):
    """eventsourcing's JSON format, decoded ~4x faster with msgspec.

    The stored bytes are unchanged (encoding is eventsourcing's, with the timestamp tagged
    up front). Typed values are stored as
    ``{"_type_": name, "_data_": ...}``; in our events they sit at the top level (the
    timestamp). When the bytes hold more type tags than the top level explains (or anything
    msgspec would read differently, such as NaN), eventsourcing's own decoder is used, so the
    result is always exactly what it would give."""

    def encode(self, obj: Any) -> bytes:
        # Every event has a timestamp: tagged here exactly as the encoder's fallback hook
        # would tag it, saving a call back into Python per event.
        timestamp = obj.get("timestamp")
        if type(timestamp) is datetime:
            obj = {**obj, "timestamp": {"_type_": "datetime_iso", "_data_": timestamp.isoformat()}}
        return super().encode(obj)

    def decode(self, data: bytes) -> Any:
        try:
            state = _decode_json(data)
        except msgspec.DecodeError:
            return super().decode(data)
        tags = data.count(b'"_type_"')
        if not tags or not isinstance(state, dict):
            return state if not tags else super().decode(data)
        for key, value in state.items():
            if type(value) is dict and len(value) == 2 and "_type_" in value and "_data_" in value:
                transcoding = self.names.get(value["_type_"])
                if transcoding is None:
                    return super().decode(data)  # raises eventsourcing's own error
                try:
                    state[key] = transcoding.decode(value["_data_"])
                except Exception:  # e.g. tagged data nested in tagged data: the general path
                    return super().decode(data)
                tags -= 1
        return state if not tags else super().decode(data)


class _FastDecoding(Application[str]):
    def construct_transcoder(self) -> Transcoder:
        transcoder = FastJSONTranscoder()
        self.register_transcodings(transcoder)
        return transcoder


class CatalogApplication(_FastDecoding):
    name = "catalog"  # tables are named catalog_events


class JobsApplication(_FastDecoding):
    name = "jobs"  # tables are named jobs_events: job progress never waits on catalog writes


JOBS_EVENTS_TABLE = "jobs_events"


class StateSnapshot(CanSnapshotAggregate[str], metaclass=MetaDomainEvent):
    """An aggregate's whole state at one version: a cache of its replay, never the truth.

    The log alone defines an aggregate; a snapshot only saves replaying the events up to its
    version. Kept one per aggregate (the latest), outside the log, written after the events
    it summarises committed, tagged with ``snapshot_schema()``: one taken before an event
    class's version changed (a new upcaster would never see it) or before
    SNAPSHOT_STATE_VERSION was bumped is ignored. Nothing else depends on them."""

    originator_id: str
    originator_version: int
    timestamp: datetime
    topic: str
    state: dict[str, Any]

    @classmethod
    def of(cls, aggregate: Any) -> StateSnapshot:
        state = dict(vars(aggregate))
        for bookkeeping in ("_id", "_version", "_pending_events"):
            state.pop(bookkeeping, None)
        # MetaDomainEvent makes the class a frozen dataclass, which mypy cannot see
        return cls(  # type: ignore[call-arg]
            originator_id=aggregate.id,
            originator_version=aggregate.version,
            timestamp=cls.create_timestamp(),
            topic=get_topic(type(aggregate)),
            state=state,
        )


class CatalogStore:
    """Loads and saves tenant-scoped aggregates; the only door to the catalog log."""

    def __init__(self, app: Application[str], *, snapshots_table: str | None = None) -> None:
        self.app = app
        self._appends: GroupCommit[StoredEvent] = GroupCommit(self._insert)
        self.snapshots_table = snapshots_table

    def _insert(self, stored: Sequence[StoredEvent]) -> Sequence[int]:
        return self.app.recorder.insert_events(stored) or []

    def load(
        self, cls: type[TEntity], actor: Actor, entity_id: str, *, version: int | None = None
    ) -> TEntity:
        """The tenant's live entity, or NotFound: another tenant's id is simply not there."""
        aggregate = self.find(aggregate_id(actor.tenant_id, entity_id), version=version)
        if not isinstance(aggregate, cls) or aggregate.deleted:
            raise NotFound(f"{cls.entity_type} not found")
        return aggregate

    def find(self, full_id: str, *, version: int | None = None) -> Any | None:
        """Any aggregate by its full id (tenant prefix included), as of ``version`` (default:
        now), or None."""
        return self.load_many([full_id], version=version).get(full_id)

    def load_many(self, full_ids: Sequence[str], *, version: int | None = None) -> dict[str, Any]:
        """Aggregates in one query (two with snapshots: the latest snapshot of each, then the
        events after it): id -> aggregate, absent ids left out; ``version`` stops each at that
        version (time travel).

        Our own read rather than ``Repository.get``: that one runs a runtime protocol check
        per event replayed (~10 us each: most of a variant create's time once a product has
        dozens of variants in its children list)."""
        if not full_ids:
            return {}
        recorder: Any = self.app.recorder
        table = sql.Identifier(recorder.datastore.schema, recorder.events_table_name)
        # The ids travel as one JSON array: psycopg adapts a Python list element by element
        # (a sixth of a bulk batch's load time for 2,500 ids).
        ids = _encode_json(list(full_ids)).decode()
        upto = 2**31 - 1 if version is None else version
        in_ids = sql.SQL("originator_id = ANY(ARRAY(SELECT jsonb_array_elements_text(%s::jsonb)))")
        found: dict[str, Any] = {}
        after: dict[str, int] = {}
        with (
            recorder.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row) as cur,
        ):
            if self.snapshots_table is not None:
                # Each aggregate's latest snapshot at or before ``upto``, if it has one (most
                # have none: a separate, cheap query keeps the events query's plan simple).
                cur.execute(
                    sql.SQL(
                        "SELECT originator_id, originator_version, topic, state FROM {}"
                        " WHERE {} AND originator_version <= %s AND schema = %s"
                    ).format(sql.Identifier(self.snapshots_table), in_ids),
                    (ids, upto, snapshot_schema()),
                    prepare=True,  # runs before every load: planned once per connection
                )
                for originator_id, at, topic, state in cur.fetchall():
                    found[originator_id] = self._from_snapshot(originator_id, at, topic, state)
                    after[originator_id] = at
            if after:
                # Only the events after each snapshot: a range of the primary key per id.
                cur.execute(
                    sql.SQL(
                        "SELECT e.originator_id, e.originator_version, e.topic, e.state"
                        " FROM jsonb_to_recordset(%s::jsonb) AS r(id text, after int)"
                        " JOIN {} AS e ON e.originator_id = r.id"
                        " AND e.originator_version > r.after AND e.originator_version <= %s"
                        " ORDER BY e.originator_id, e.originator_version"
                    ).format(table),
                    (
                        _encode_json(
                            [{"id": i, "after": after.get(i, 0)} for i in dict.fromkeys(full_ids)]
                        ).decode(),
                        upto,
                    ),
                )
            else:
                cur.execute(
                    sql.SQL(
                        "SELECT originator_id, originator_version, topic, state FROM {}"
                        " WHERE {} AND originator_version <= %s"
                        " ORDER BY originator_id, originator_version"
                    ).format(table, in_ids),
                    (ids, upto),
                )
            rows = cur.fetchall()
        decode = self.decode
        for originator_id, at, topic, state in rows:
            event = decode(originator_id, at, topic, bytes(state))
            found[originator_id] = event.mutate(found.get(originator_id))
        return found

    def _from_snapshot(self, originator_id: str, version: int, topic: str, state: Any) -> Any:
        snapshot = self.decode(originator_id, version, topic, bytes(state))
        return snapshot.mutate(None)

    def save(self, *aggregates: Any) -> int | None:
        """Save atomically; the log position of the last event, or None if nothing changed.

        What ``Application.save`` does here (no snapshots, no cache), minus what costs and is
        not used: runtime protocol checks per aggregate and a Recording object per event
        (together a sixth of a bulk batch's time). Concurrent saves share a transaction
        (group commit), each still atomic on its own."""
        to_stored = self.app.mapper.to_stored_event
        stored: list[StoredEvent] = []
        due: list[Any] = []
        for aggregate in aggregates:
            events = aggregate.collect_events()
            if not events:
                continue
            stored += [to_stored(e) for e in events]
            if (
                self.snapshots_table is not None
                and getattr(aggregate, "snapshot", False)
                and aggregate.version // SNAPSHOT_EVERY
                > (aggregate.version - len(events)) // SNAPSHOT_EVERY
            ):
                due.append(aggregate)
        if not stored:
            return None
        positions = self._appends.write(stored)
        if due:
            self._write_snapshots(due)
        return max(positions) if positions else None

    def _write_snapshots(self, aggregates: list[Any]) -> None:
        """Best effort, after the events committed: a snapshot is only a cache of a replay,
        so one that is not written costs a longer replay, never a wrong state."""
        assert self.snapshots_table is not None
        to_stored = self.app.mapper.to_stored_event
        schema = snapshot_schema()
        rows = [
            (s.originator_id, s.originator_version, s.topic, s.state, schema)
            for s in (to_stored(StateSnapshot.of(a)) for a in aggregates)
        ]
        recorder: Any = self.app.recorder
        try:
            with recorder.datastore.get_connection() as conn, conn.cursor() as cur:
                cur.executemany(
                    sql.SQL(
                        "INSERT INTO {} AS s"
                        " (originator_id, originator_version, topic, state, schema)"
                        " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (originator_id) DO UPDATE"
                        " SET originator_version = EXCLUDED.originator_version,"
                        " topic = EXCLUDED.topic, state = EXCLUDED.state, schema = EXCLUDED.schema"
                        " WHERE s.originator_version < EXCLUDED.originator_version"
                        " OR s.schema <> EXCLUDED.schema"
                    ).format(sql.Identifier(self.snapshots_table)),
                    rows,
                )
                conn.commit()
        except Exception as exc:  # a cache miss later, not a failed save now
            log.warning("snapshots of %d aggregates not written: %s", len(rows), exc)

    def decode(self, originator_id: str, version: int, topic: str, state: bytes) -> Any:
        return self.app.mapper.to_domain_event(
            StoredEvent(
                originator_id=originator_id, originator_version=version, topic=topic, state=state
            )
        )
