"""Per-tenant projection of the catalog log, and the background runners that share it out.

The catalog log commits in per-tenant order (eventstore.recorders), so every projection keeps
one position per tenant (``projection_positions``) and catches a tenant up alone, under that
tenant's advisory lock:

- read-your-writes: a request waits for *its tenant's* events up to its position, applying
  them itself if nobody has yet; another tenant's backlog (a bulk import) is never in its way;
- background runners apply what other processes wrote. Tenants are hashed into PARTITIONS
  partitions; each runner claims a fair share of them with session advisory locks on its
  listening connection (runners count each other through a shared presence lock and
  rebalance every few seconds), learns which tenants have events through the notifications
  writers send (payload: the tenant) and a periodic sweep of the log's heads, and serves
  pending tenants round-robin, one batch each, so one tenant's backlog never holds up
  another's projection.

Partition claims only share out work: correctness rests on the tenant lock and on positions
committed with the view rows, so any process may catch any tenant up at any time, and an
event is applied exactly once whoever applies it. A rebuild or verify pauses every catcher of
the group through ``pause_key`` (held shared by each catch-up, exclusively by the operator
command)."""

from __future__ import annotations

import logging
import os
import random
import socket
import time
from collections import deque
from collections.abc import Collection, Iterable
from typing import Any

import msgspec
import psycopg
from psycopg import sql

from pim.eventstore import PARTITIONS, tenant_partition
from pim.eventstore.recorders import heads_table_name
from pim.infra.database import advisory_lock_key, log_failure
from pim.projections.base import rendered
from pim.projections.runner import POLL_INTERVAL_S, SETTLE_S, Projector, Row, _timeout_ms
from pim.projections.statements import Statements

log = logging.getLogger(__name__)

_decode_json = msgspec.json.Decoder(dict[str, int]).decode


# How often a runner recounts the runners and rebalances its partitions.
REBALANCE_S = 2.0
# How long a runner leaves a notified tenant to the writer's own catch-up (read-your-writes
# catches an API write up within milliseconds) before it looks: taking the tenant's lock
# first would make the request wait for a runner with a lower CPU priority.
RUNNER_GRACE_S = 0.15
# How long a runner waits for a tenant's lock (a request catching that tenant up) before it
# moves on to the next tenant and comes back later.
RUNNER_LOCK_WAIT_S = 0.5
# wait_for_others: how often it looks, and how long without progress before it helps.
PASSIVE_POLL_S = 0.005
STALL_S = 0.06

# Projections' positions for one tenant: (name, position), a name without a row at its floor.
TENANT_POSITIONS = """
    SELECT n.name, COALESCE(p.position, f.position, 0)
      FROM unnest(%s::text[]) AS n(name)
      LEFT JOIN projection_positions p ON p.name = n.name AND p.tenant_id = %s
      LEFT JOIN projection_tracking f ON f.name = n.name
"""

_HELD_LOCKS = """
    SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks
     WHERE locktype = 'advisory' AND granted AND objsubid = 1
       AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND ((classid::bigint << 32) | objid::bigint) = ANY(%s)
"""


def runner_name() -> str:
    """How a runner shows in pg_stat_activity (and in ``pim projections status``)."""
    return f"pim projections {socket.gethostname()} pid {os.getpid()}"


class TenantProjector(Projector):
    """Catalog projections, one position per (projection, tenant); see the module doc."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heads_table = heads_table_name(self.events_table)
        self.pause_key = advisory_lock_key(f"pim:{self.group}:pause")
        self.presence_key = advisory_lock_key(f"pim:{self.group}:runner")
        self._rendered: dict[int, bytes] = {}
        # The expression is the tenant index's own (eventstore.recorders), so it is used.
        self._batch_sql = sql.SQL(
            "WITH pos AS (" + TENANT_POSITIONS + ")"
            " SELECT NULL::bigint, json_object_agg(name, position)::text, NULL::bigint,"
            " NULL::text, NULL::bytea FROM pos AS p(name, position)"
            " UNION ALL SELECT * FROM (SELECT notification_id, originator_id,"
            " originator_version, topic, state FROM {events}"
            " WHERE split_part(originator_id, ':', 1) = %s"
            " AND notification_id > (SELECT min(position) FROM pos AS p(name, position))"
            " AND notification_id <= %s ORDER BY notification_id LIMIT %s) AS e"
        ).format(events=sql.Identifier(self.events_table))
        self._pending_sql = sql.SQL(
            "SELECT h.tenant_id FROM {heads} h WHERE {which} AND h.position > ("
            " SELECT min(COALESCE(p.position, f.position, 0))"
            " FROM unnest(%s::text[]) AS n(name)"
            " LEFT JOIN projection_positions p ON p.name = n.name AND p.tenant_id = h.tenant_id"
            " LEFT JOIN projection_tracking f ON f.name = n.name)"
        )

    # -- keys -----------------------------------------------------------------------------

    def tenant_key(self, tenant_id: str) -> int:
        return advisory_lock_key(f"pim:{self.group}:tenant:{tenant_id}")

    def partition_key(self, partition: int) -> int:
        return advisory_lock_key(f"pim:{self.group}:partition:{partition}")

    # -- the scope: one tenant ------------------------------------------------------------

    def lock(self, stmts: Statements, scope: str, timeout: float | None) -> None:
        # The views are derived from the durable log: a commit lost in a crash is applied
        # again (views and positions are lost together), so it need not wait for the disk.
        stmts.execute(
            "SELECT set_config('lock_timeout', %s, true),"
            " set_config('synchronous_commit', 'off', true), pg_advisory_xact_lock_shared(%s),"
            " pg_advisory_xact_lock(%s)",
            (_timeout_ms(timeout), self.pause_key, self.tenant_key(scope)),
        )

    def positions(self, conn: psycopg.Connection[Any], scope: str) -> dict[str, int]:
        rows = conn.execute(TENANT_POSITIONS, (self.names, scope), prepare=True).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def read_batch(
        self, stmts: Statements, scope: str, stop: int | None
    ) -> tuple[dict[str, int], list[Row]]:
        """Positions and the events after them in one statement: the first row carries the
        positions (a NULL position column), the others are the events."""
        upto = stop if stop is not None else 2**63 - 1
        rows = stmts.read(
            rendered(self._batch_sql, stmts.conn, self._rendered),
            (self.names, scope, scope, upto, self.batch_size),
        )
        positions: dict[str, int] = {}
        events: list[Row] = []
        for row in rows:
            if row[0] is None:
                positions = {name: int(pos) for name, pos in _decode_json(row[1]).items()}
            else:
                events.append(row)
        events.sort(key=lambda row: int(row[0]))
        return positions, events

    def record(self, stmts: Statements, scope: str, reached: int) -> None:
        stmts.execute(
            """INSERT INTO projection_positions (name, tenant_id, position, updated_at)
               SELECT unnest(%s::text[]), %s, %s, now()
               ON CONFLICT (name, tenant_id) DO UPDATE
               SET position = GREATEST(projection_positions.position, EXCLUDED.position),
                   updated_at = now()""",
            (self.names, scope, reached),
        )

    # -- which tenants have events to project ---------------------------------------------

    def pending(
        self,
        conn: psycopg.Connection[Any],
        *,
        partitions: Collection[int] | None = None,
        tenants: Collection[str] | None = None,
    ) -> list[str]:
        """Tenants (of these partitions, or of these tenants, or all) whose head is beyond
        some projection's position."""
        query, params = self.pending_query(partitions=partitions, tenants=tenants)
        return [str(r[0]) for r in conn.execute(query, params).fetchall()]

    def pending_query(
        self,
        *,
        partitions: Collection[int] | None = None,
        tenants: Collection[str] | None = None,
    ) -> tuple[sql.Composed, list[Any]]:
        """The query behind ``pending`` (one column: tenant_id), for sync or async use."""
        which: sql.Composable = sql.SQL("TRUE")
        params: list[Any] = []
        if tenants is not None:
            which = sql.SQL("h.tenant_id = ANY(%s)")
            params.append(list(tenants))
        elif partitions is not None:
            which = sql.SQL("h.partition = ANY(%s::smallint[])")
            params.append(list(partitions))
        query = self._pending_sql.format(heads=sql.Identifier(self.heads_table), which=which)
        return query, [*params, self.names]

    def catch_up_all(self, conn: psycopg.Connection[Any]) -> int:
        """Catch every tenant up (operators' commands); returns the events applied."""
        total = 0
        for tenant in self.pending(conn):
            while True:
                applied, more = self.apply_batch(tenant)
                total += applied
                if not more:
                    break
        return total

    # -- bulk jobs: wait for a runner, help only if there is none -------------------------

    def wait_for_others(self, tenant_id: str, position: int, timeout: float) -> bool:
        """Like ``wait_for``, but leave the work to the background runner that owns the
        tenant's partition (``pim serve`` projects in one process while its worker process
        writes a bulk job). This process projects itself when no runner owns the partition,
        or when the tenant's lock is free and its position has not moved for STALL_S."""
        deadline = time.monotonic() + timeout
        reached, stalled_since = -1, time.monotonic()
        tenant_key = self.tenant_key(tenant_id)
        partition_key = self.partition_key(tenant_partition(tenant_id))
        while True:
            with self.pool.connection() as conn:
                now_at = min(self.positions(conn, tenant_id).values())
                held = {
                    int(r[0])
                    for r in conn.execute(_HELD_LOCKS, ([tenant_key, partition_key],)).fetchall()
                }
            self._learn(tenant_id, now_at)
            if now_at >= position:
                return True
            now = time.monotonic()
            if partition_key not in held:  # no runner owns it: no one to wait for
                return self.wait_for(tenant_id, position, timeout=max(deadline - now, 0.001))
            if tenant_key in held or now_at > reached:
                reached, stalled_since = now_at, now
            elif now - stalled_since > STALL_S:
                return self.wait_for(tenant_id, position, timeout=max(deadline - now, 0.001))
            if now >= deadline:
                return False
            time.sleep(PASSIVE_POLL_S)

    # -- the background runner ------------------------------------------------------------

    def run_forever(self, database_url: str) -> None:
        """Claim partitions and keep their tenants projected until stopped; reconnects and
        starts over after any error (supervision)."""
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    database_url, autocommit=True, application_name=runner_name()
                ) as listener:
                    self._serve(listener)
            except Exception as exc:
                if self._stop.is_set():
                    break
                log_failure(log, "projection runner failed; restarting in 1s", exc)
                self._stop.wait(1.0)

    def _serve(self, listener: psycopg.Connection[Any]) -> None:
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.events_table)))
        listener.execute("SELECT pg_advisory_lock_shared(%s)", (self.presence_key,))
        claimed: set[int] = set()
        queue: deque[str] = deque()  # tenants with events to apply, served round-robin
        due: dict[str, float] = {}  # notified tenants -> when to look at them
        next_rebalance = next_sweep = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_rebalance:
                before = set(claimed)
                claimed = self._rebalance(listener, claimed)
                next_rebalance = now + REBALANCE_S
                if claimed - before:
                    next_sweep = 0.0  # new partitions: look at them now
            wake = min([next_sweep, next_rebalance, *due.values()])
            wait = 0.0 if queue else max(0.0, wake - now)
            notified = {n.payload for n in listener.notifies(timeout=wait, stop_after=1)}
            if notified and not queue:
                # Let a burst settle, then drain its notices: a busy tenant costs one
                # catch-up per window, not one per write.
                self._stop.wait(SETTLE_S)
            notified.update(n.payload for n in listener.notifies(timeout=0))
            now = time.monotonic()
            for tenant in notified:
                if tenant and tenant_partition(tenant) in claimed:
                    due.setdefault(tenant, now + RUNNER_GRACE_S)
            sweep = now >= next_sweep or "" in notified
            candidates = {t for t, at in due.items() if at <= now}
            for tenant in candidates:
                del due[tenant]
            if sweep or candidates:
                with self.pool.connection() as conn:
                    found = (
                        self.pending(conn, partitions=claimed)
                        if sweep
                        else self.pending(conn, tenants=candidates)
                    )
                _enqueue(queue, found)
                if sweep:
                    next_sweep = time.monotonic() + POLL_INTERVAL_S
            if queue:
                self._serve_one(queue)

    def _serve_one(self, queue: deque[str]) -> None:
        tenant_id = queue.popleft()
        try:
            _, more = self.apply_batch(tenant_id, lock_timeout=RUNNER_LOCK_WAIT_S)
        except psycopg.errors.LockNotAvailable:
            more = True  # a request is catching it up; look again after the others
        if more:
            queue.append(tenant_id)

    def _rebalance(self, conn: psycopg.Connection[Any], claimed: set[int]) -> set[int]:
        """Hold a fair share of the partitions: ceil(PARTITIONS / runners present)."""
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND objsubid = 1"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND ((classid::bigint << 32) | objid::bigint) = %s",
            (self.presence_key,),
        ).fetchone()
        runners = max(1, int(row[0]) if row else 1)
        target = -(-PARTITIONS // runners)
        claimed = set(claimed)
        for partition in sorted(claimed, reverse=True)[: max(0, len(claimed) - target)]:
            conn.execute("SELECT pg_advisory_unlock(%s)", (self.partition_key(partition),))
            claimed.discard(partition)
        offset = random.randrange(PARTITIONS)  # noqa: S311 - spreads claims, not security
        for step in range(PARTITIONS):
            if len(claimed) >= target:
                break
            partition = (offset + step) % PARTITIONS
            if partition in claimed:
                continue
            got = conn.execute(
                "SELECT pg_try_advisory_lock(%s)", (self.partition_key(partition),)
            ).fetchone()
            if got and got[0]:
                claimed.add(partition)
        return claimed


def _enqueue(queue: deque[str], tenants: Iterable[str]) -> None:
    waiting = set(queue)
    for tenant in tenants:
        if tenant not in waiting:
            queue.append(tenant)
            waiting.add(tenant)
