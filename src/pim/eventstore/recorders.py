"""How events are appended to a log, and in which order they become visible.

Readers that follow a log by position must never pass over a position that commits later.
Two orders give that guarantee, each for its own readers:

- ``TenantOrderedRecorder`` (the catalog log): each transaction takes an advisory lock per
  tenant it writes, before it draws positions, and holds it until COMMIT. One tenant's events
  therefore commit in position order, while different tenants append side by side: a bulk
  import never makes another tenant's write wait. Every reader of the catalog log reads one
  tenant's slice (projections keep a position per tenant, audit and the change feed are per
  tenant), so per-tenant order is all they need. A trigger moves each tenant's *head*
  (``catalog_heads``: its newest position) in the appending transaction, whoever appends:
  background projection runners learn from the heads which tenants have events to project,
  without scanning the log.
- ``GlobalOrderedRecorder`` (the jobs log): eventsourcing's way, an EXCLUSIVE lock on the
  events table until COMMIT, so the whole log commits in position order. Its transactions
  are single small job events, and its one reader (the jobs view and dispatcher) follows the
  whole log.

See docs/decisions/0018-per-tenant-log-order.md."""

from __future__ import annotations

import hashlib
import logging
import weakref
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresAggregateRecorder, PostgresApplicationRecorder
from psycopg import sql

from pim.domain.ids import tenant_of
from pim.infra.database import advisory_lock_key
from pim.infra.idempotency import Receipt, record_receipts

log = logging.getLogger(__name__)

# From this many events on, a save uses COPY instead of INSERT ... unnest(...).
COPY_THRESHOLD = 200

# Tenants are spread over this many partitions (by a hash of the tenant id) for background
# projection runners to share out. Fixed: it is part of every head row.
PARTITIONS = 16


def tenant_partition(tenant_id: str) -> int:
    """The partition of a tenant: the first byte of md5(tenant id), modulo PARTITIONS. The
    same as PARTITION_SQL, so rows backfilled in SQL agree with rows written from Python."""
    return hashlib.md5(tenant_id.encode(), usedforsecurity=False).digest()[0] % PARTITIONS


def partition_sql(column: str) -> sql.Composable:
    """SQL computing ``tenant_partition`` of a text column."""
    # mod(), not %: the statement may carry parameters, where % starts a placeholder.
    return sql.SQL("mod(get_byte(decode(md5({}), 'hex'), 0), {})").format(
        sql.Identifier(column), sql.Literal(PARTITIONS)
    )


def append_lock_key(tenant_id: str) -> int:
    """The advisory lock a transaction holds while it appends a tenant's events."""
    return advisory_lock_key(f"pim:append:{tenant_id}")


def heads_table_name(events_table: str) -> str:
    return f"{events_table.removesuffix('_events')}_heads"


def tenant_index_name(events_table: str) -> str:
    # The name of the index audit created before the event store owned it (no rebuild).
    return f"{events_table}_tenant_position_idx"


def tenant_slice_ddl(schema: str, events_table: str) -> list[sql.Composed]:
    """What lets readers follow one tenant's slice of a log: an index on the tenant part of
    the originator id and the position, and each tenant's head (its newest position), kept
    by a trigger in the appending transaction, whoever appends."""
    table = sql.Identifier(schema, events_table)
    heads_table = heads_table_name(events_table)
    heads = sql.Identifier(schema, heads_table)
    advance = sql.Identifier(schema, f"{heads_table}_advance")
    return [
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (tenant_id text PRIMARY KEY,"
            " partition smallint NOT NULL, position bigint NOT NULL,"
            " updated_at timestamptz NOT NULL DEFAULT now())"
        ).format(heads),
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (partition, tenant_id)").format(
            sql.Identifier(f"{heads_table}_partition_idx"), heads
        ),
        # One tenant's events in log order: projections, audit and the change feed read the
        # log through it, never scanning other tenants' events.
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS {} ON {} ((split_part(originator_id, ':', 1)),"
            " notification_id)"
        ).format(sql.Identifier(tenant_index_name(events_table)), table),
        # Heads move with every statement that appends (one upsert per tenant).
        sql.SQL(
            "CREATE OR REPLACE FUNCTION {advance}() RETURNS trigger LANGUAGE plpgsql AS $$"
            " BEGIN"
            " INSERT INTO {heads} (tenant_id, partition, position, updated_at)"
            " SELECT tenant_id, {partition}, max(notification_id), now() FROM"
            " (SELECT split_part(originator_id, ':', 1) AS tenant_id, notification_id"
            "  FROM appended) AS r GROUP BY tenant_id"
            " ON CONFLICT (tenant_id) DO UPDATE SET updated_at = now(),"
            " position = GREATEST({heads}.position, EXCLUDED.position);"
            " RETURN NULL;"
            " END $$"
        ).format(advance=advance, heads=heads, partition=partition_sql("tenant_id")),
        sql.SQL(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_trigger"
            " WHERE tgname = {name} AND tgrelid = {table_name}::regclass) THEN"
            " CREATE TRIGGER {trigger} AFTER INSERT ON {table}"
            " REFERENCING NEW TABLE AS appended FOR EACH STATEMENT"
            " EXECUTE FUNCTION {advance}(); END IF; END $$"
        ).format(
            name=sql.Literal(f"{heads_table}_advance"),
            table_name=sql.Literal(f"{schema}.{events_table}"),
            trigger=sql.Identifier(f"{heads_table}_advance"),
            table=table,
            advance=advance,
        ),
    ]


class TenantOrderedRecorder(PostgresApplicationRecorder):
    """Appends under per-tenant advisory locks and keeps each tenant's head (module doc).

    Without psycopg pipeline mode (measured here: ~2.7 ms wall and ~0.8 ms CPU per save in
    pipeline mode, ~1.6 ms and ~0.5 ms in a plain transaction). The NOTIFY that wakes the
    projection runners is sent after COMMIT: a notifying transaction holds PostgreSQL's
    global notification lock through its commit, which would serialise every tenant's
    commits again. A notification lost in a crash costs a runner's next sweep (~1 s)."""

    def __init__(self, datastore: Any, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        schema = self.datastore.schema
        table = sql.Identifier(schema, self.events_table_name)
        self.heads_table = heads_table_name(self.events_table_name)
        self.sql_create_statements += tenant_slice_ddl(schema, self.events_table_name)
        # A save of fewer than COPY_THRESHOLD events is this one statement, its own
        # transaction (one round trip): the tenants' advisory locks are taken (in the given,
        # sorted order) before the rows exist, so before any position is drawn, and held
        # until the statement's commit. Opening the table for INSERT takes its ROW EXCLUSIVE
        # lock first, so no position is drawn while an older release holds EXCLUSIVE.
        self._insert = sql.SQL(
            "WITH locked AS MATERIALIZED (SELECT count(pg_advisory_xact_lock(k))"
            " FROM unnest(%s::bigint[]) WITH ORDINALITY AS l(k, n))"
            " INSERT INTO {} (originator_id, originator_version, topic, state)"
            " SELECT e.originator_id, e.originator_version, e.topic, e.state FROM locked,"
            " unnest(%s::text[], %s::bigint[], %s::text[], %s::bytea[]) WITH ORDINALITY"
            " AS e(originator_id, originator_version, topic, state, n) ORDER BY e.n"
            " RETURNING notification_id"
        ).format(table)
        self._copy = sql.SQL(
            "COPY {} (notification_id, originator_id, originator_version, topic, state)"
            " FROM STDIN (FORMAT BINARY)"
        ).format(table)
        self._bounded: weakref.WeakSet[Any] = weakref.WeakSet()
        self._draw_positions = sql.SQL(
            "SELECT nextval(pg_get_serial_sequence({}, 'notification_id'))"
            " FROM generate_series(1, %s)"
        ).format(sql.Literal(f"{schema}.{self.events_table_name}"))

    def insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        notify: bool = True,
        receipts: Sequence[Receipt] = (),
        **kwargs: Any,
    ) -> Sequence[int] | None:
        """Append in one transaction; the positions given, in order. ``receipts``: answers to
        idempotent requests, recorded in the same transaction (ClaimLost, and nothing
        written, if a claim is no longer held). ``notify``: wake the background runners (a
        writer that catches the views up itself need not)."""
        if not stored_events:
            return []
        tenants = sorted({tenant_of(str(e.originator_id)) for e in stored_events})
        with self.datastore.get_connection() as conn:
            if conn not in self._bounded:
                # Lock waits of this session's statements are bounded (the tenants' locks of
                # the one-statement save below included); set once per connection.
                conn.execute(
                    "SELECT set_config('lock_timeout', %s, false)",
                    (f"{int(self.datastore.lock_timeout)}s",),
                )
                self._bounded.add(conn)
            if not receipts and len(stored_events) < COPY_THRESHOLD:
                positions = self._insert_statement(conn, tenants, stored_events)
            else:
                with conn.transaction():
                    record_receipts(conn, list(receipts))
                    if len(stored_events) < COPY_THRESHOLD:
                        positions = self._insert_statement(conn, tenants, stored_events)
                    else:
                        positions = self._copy_events(conn, tenants, stored_events)
            if notify:
                try:
                    conn.execute(
                        "SELECT pg_notify(%s, t) FROM unnest(%s::text[]) AS t",
                        (self.channel_name, tenants),
                    )
                except Exception as exc:  # committed: a runner's sweep finds the events
                    log.debug("notification after commit not sent: %s", exc)
        return positions

    def _insert_statement(
        self, conn: Any, tenants: list[str], stored_events: Sequence[StoredEvent]
    ) -> list[int]:
        """The one-statement append (its own transaction unless the caller opened one)."""
        rows = conn.execute(
            self._insert,
            (
                [append_lock_key(t) for t in tenants],
                [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events],
                [e.topic for e in stored_events],
                [e.state for e in stored_events],
            ),
            prepare=True,
        ).fetchall()
        return [int(row["notification_id"]) for row in rows]

    def _copy_events(
        self, conn: Any, tenants: list[str], stored_events: Sequence[StoredEvent]
    ) -> list[int]:
        """Binary COPY for big batches (bulk jobs), in the caller's transaction: the table's
        ROW EXCLUSIVE lock first (before any position is drawn: an older release appends
        under EXCLUSIVE), the tenants' locks (sorted), then positions drawn (so each
        tenant's are above all its earlier ones) and copied with the rows."""
        with conn.cursor() as curs:
            curs.execute(
                sql.SQL("LOCK TABLE {} IN ROW EXCLUSIVE MODE; {}").format(
                    sql.Identifier(self.datastore.schema, self.events_table_name),
                    sql.SQL("; ").join(
                        sql.SQL("SELECT pg_advisory_xact_lock({})").format(
                            sql.Literal(append_lock_key(t))
                        )
                        for t in tenants
                    ),
                )
            )
            curs.execute(self._draw_positions, (len(stored_events),))
            positions = sorted(int(row["nextval"]) for row in curs.fetchall())
            with curs.copy(self._copy) as copy:
                copy.set_types(["int8", "text", "int8", "text", "bytea"])
                for position, event in zip(positions, stored_events, strict=True):
                    copy.write_row(
                        (
                            position,
                            event.originator_id,
                            event.originator_version,
                            event.topic,
                            event.state,
                        )
                    )
        return positions


class GlobalOrderedRecorder(PostgresApplicationRecorder):
    """eventsourcing's recorder (the EXCLUSIVE table lock: the whole log commits in position
    order), inserting without psycopg pipeline mode (see TenantOrderedRecorder). Its log can
    be followed whole (the job dispatcher) or tenant by tenant (the jobs view: one tenant's
    job record never waits on another's job progress), so it keeps heads too."""

    def __init__(self, datastore: Any, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.sql_create_statements += tenant_slice_ddl(
            self.datastore.schema, self.events_table_name
        )

    def insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        receipts: Sequence[Receipt] = (),
        **kwargs: Any,
    ) -> Sequence[int] | None:
        """Append in one transaction, recording ``receipts`` in it (see
        TenantOrderedRecorder)."""
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
            record_receipts(conn, list(receipts))
            curs.execute(lock_and_notify)
            PostgresAggregateRecorder._insert_stored_events(self, curs, stored_events)
            return [row["notification_id"] for row in curs.fetchall()]


def backfill_heads(conn: Any, events_table: str) -> None:
    """Heads for a log written before heads existed (run once, under the migration lock)."""
    heads = sql.Identifier(heads_table_name(events_table))
    empty = conn.execute(sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {})").format(heads)).fetchone()
    if not empty or not empty[0]:
        return
    conn.execute(
        sql.SQL(
            "INSERT INTO {heads} (tenant_id, partition, position)"
            " SELECT tenant_id, {partition}, max(notification_id) FROM"
            " (SELECT split_part(originator_id, ':', 1) AS tenant_id, notification_id"
            "  FROM {table}) AS e GROUP BY tenant_id ON CONFLICT (tenant_id) DO NOTHING"
        ).format(
            heads=heads,
            partition=partition_sql("tenant_id"),
            table=sql.Identifier(events_table),
        )
    )
