"""The store: loads and saves tenant-scoped aggregates of one log. The only door to a log."""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Sequence
from typing import Any, TypeVar

import msgspec
from eventsourcing.application import Application
from eventsourcing.persistence import StoredEvent
from psycopg import sql
from psycopg.rows import tuple_row

from pim.domain.context import Actor
from pim.domain.entity import Entity
from pim.domain.errors import NotFound
from pim.domain.ids import aggregate_id, tenant_of
from pim.eventstore.snapshots import SNAPSHOT_EVERY, StateSnapshot, snapshot_schema
from pim.infra.group_commit import GroupCommit
from pim.infra.idempotency import Receipt

log = logging.getLogger(__name__)

TEntity = TypeVar("TEntity", bound=Entity)

_encode_json = msgspec.json.Encoder().encode


class EventStore:
    """Loads and saves the tenant-scoped aggregates of one log (the catalog's or the jobs')."""

    def __init__(
        self,
        app: Application[str],
        *,
        snapshots_table: str | None = None,
        notify_runners: bool = True,
    ) -> None:
        self.app = app
        self.snapshots_table = snapshots_table
        # Whether saves wake the background projection runners. A process whose every save
        # is followed by its own catch-up (the API: read-your-writes) need not; the runners'
        # sweep finds anything it left.
        self.notify_runners = notify_runners
        # One group commit per tenant: saves of one tenant share a transaction (they take
        # turns on its append lock anyway); different tenants' saves never wait on each
        # other. Kept while in use, dropped when idle.
        self._groups: weakref.WeakValueDictionary[str, GroupCommit[StoredEvent | Receipt]] = (
            weakref.WeakValueDictionary()
        )
        self._groups_lock = threading.Lock()

    def _insert(self, items: Sequence[StoredEvent | Receipt]) -> Sequence[int]:
        """One transaction for the events and receipts of the saves grouped together; one
        position per item, in order (0 for a receipt)."""
        stored = [i for i in items if isinstance(i, StoredEvent)]
        receipts = [i for i in items if isinstance(i, Receipt)]
        options: dict[str, Any] = {"receipts": receipts} if receipts else {}
        if not self.notify_runners:
            options["notify"] = False
        positions = iter(self.app.recorder.insert_events(stored, **options) or [])
        return [0 if isinstance(i, Receipt) else next(positions) for i in items]

    def _group(self, tenant_id: str) -> GroupCommit[StoredEvent | Receipt]:
        with self._groups_lock:
            group = self._groups.get(tenant_id)
            if group is None:
                group = self._groups[tenant_id] = GroupCommit(self._insert)
            return group

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

    def save(self, *aggregates: Any, receipt: Receipt | None = None) -> int | None:
        """Save atomically; the log position of the last event, or None if nothing changed.
        ``receipt``: the answer to the idempotent request making this write, recorded in
        the same transaction (ClaimLost, and nothing saved, if its claim is gone).

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
        tenants = {tenant_of(str(s.originator_id)) for s in stored}
        group = self._group(tenants.pop() if len(tenants) == 1 else "")
        positions = group.write([*stored, receipt] if receipt is not None else stored)
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
