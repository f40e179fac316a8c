"""The catalog event store: one eventsourcing application holding every catalog aggregate,
so a command that touches several aggregates saves them in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

import msgspec
from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError, JSONTranscoder, StoredEvent, Transcoder
from eventsourcing.postgres import PostgresAggregateRecorder, PostgresApplicationRecorder
from psycopg import sql
from psycopg.rows import tuple_row

from pim.domain.context import Actor
from pim.domain.entity import Entity
from pim.domain.errors import NotFound
from pim.domain.ids import aggregate_id
from pim.infra.group_commit import GroupCommit

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


class CatalogStore:
    """Loads and saves tenant-scoped aggregates; the only door to the catalog log."""

    def __init__(self, app: Application[str]) -> None:
        self.app = app
        self._appends: GroupCommit[StoredEvent] = GroupCommit(self._insert)

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
        """Aggregates in one query: id -> aggregate, absent ids left out; ``version`` stops
        each at that version (time travel).

        Our own read rather than ``Repository.get``: that one runs a runtime protocol check
        per event replayed (~10 us each: most of a variant create's time once a product has
        dozens of variants in its children list)."""
        if not full_ids:
            return {}
        recorder: Any = self.app.recorder
        table = sql.Identifier(recorder.datastore.schema, recorder.events_table_name)
        with (
            recorder.datastore.get_connection() as conn,
            conn.cursor(row_factory=tuple_row) as cur,
        ):
            # The ids travel as one JSON array: psycopg adapts a Python list element by element
            # (a sixth of a bulk batch's load time for 2,500 ids).
            cur.execute(
                sql.SQL(
                    "SELECT originator_id, originator_version, topic, state FROM {}"
                    " WHERE originator_id = ANY(ARRAY(SELECT jsonb_array_elements_text(%s::jsonb)))"
                    " AND originator_version <= %s ORDER BY originator_id, originator_version"
                ).format(table),
                (_encode_json(list(full_ids)).decode(), 2**31 - 1 if version is None else version),
            )
            rows = cur.fetchall()
        found: dict[str, Any] = {}
        decode = self.decode
        for originator_id, version, topic, state in rows:
            event = decode(originator_id, version, topic, bytes(state))
            found[originator_id] = event.mutate(found.get(originator_id))
        return found

    def save(self, *aggregates: Any) -> int | None:
        """Save atomically; the log position of the last event, or None if nothing changed.

        What ``Application.save`` does here (no snapshots, no cache), minus what costs and is
        not used: runtime protocol checks per aggregate and a Recording object per event
        (together a sixth of a bulk batch's time). Concurrent saves share a transaction
        (group commit), each still atomic on its own."""
        to_stored = self.app.mapper.to_stored_event
        stored = [to_stored(e) for aggregate in aggregates for e in aggregate.collect_events()]
        if not stored:
            return None
        positions = self._appends.write(stored)
        return max(positions) if positions else None

    def decode(self, originator_id: str, version: int, topic: str, state: bytes) -> Any:
        return self.app.mapper.to_domain_event(
            StoredEvent(
                originator_id=originator_id, originator_version=version, topic=topic, state=state
            )
        )
