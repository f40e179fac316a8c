"""Runs projections over the catalog log.

Two drivers share one code path (``catch_up``):
- a request that has just written calls ``wait_for(position)``, which catches the views up
  itself if nobody else has yet (read-your-writes within milliseconds, no polling floor);
- a background loop (``run_forever``) follows LISTEN/NOTIFY with a periodic poll, for writes
  made by other processes, and is supervised (restarts after errors).
A PostgreSQL advisory lock makes exactly one catcher apply events at a time, across every
process; views and tracking positions commit in the same transaction.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from pim.eventstore import EVENTS_TABLE, CatalogStore
from pim.infra.database import advisory_lock_key
from pim.projections.base import Projection, without_nul

log = logging.getLogger(__name__)

TRACKING_DDL = [
    """CREATE TABLE IF NOT EXISTS projection_tracking (
        name text PRIMARY KEY,
        position bigint NOT NULL DEFAULT 0,
        updated_at timestamptz NOT NULL DEFAULT now()
    )""",
]

BATCH_SIZE = 1000
POLL_INTERVAL_S = 1.0
SETTLE_S = 0.02
# wait_for_others: how often it looks, and how long without progress before it helps.
PASSIVE_POLL_S = 0.005
STALL_S = 0.06


class Projector:
    """Applies catalog events to a set of projections, each tracked by name."""

    def __init__(
        self,
        pool: ConnectionPool[Any],
        store: CatalogStore,
        projections: Sequence[Projection],
        *,
        group: str = "catalog",
        events_table: str = EVENTS_TABLE,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.batch_size = batch_size
        self.pool = pool
        self.store = store
        self.projections = list(projections)
        self.group = group
        self.events_table = events_table
        self.lock_key = advisory_lock_key(f"pim:{group}")
        # Held (shared) by every running background runner of this group, for as long as its
        # listening session lives: others can tell whether anyone follows the log.
        self.runner_key = advisory_lock_key(f"pim:{group}:runner")
        self._position = 0  # highest position known applied (only grows)
        self._local = threading.Lock()
        self._stop = threading.Event()
        self._wanted_topics = set().union(*(p.topics() for p in self.projections))

    # -- schema ---------------------------------------------------------------------------

    @staticmethod
    def ddl_for(projections: Sequence[Projection]) -> list[str]:
        statements = list(TRACKING_DDL)
        for projection in projections:
            statements.extend(projection.ddl())
        return statements

    # -- positions ------------------------------------------------------------------------

    @property
    def position(self) -> int:
        return self._position

    def tracked_positions(self, conn: psycopg.Connection[Any]) -> dict[str, int]:
        rows = conn.execute(
            "SELECT name, position FROM projection_tracking WHERE name = ANY(%s)",
            ([p.tracking_name for p in self.projections],),
        ).fetchall()
        found = {str(r[0]): int(r[1]) for r in rows}
        return {p.tracking_name: found.get(p.tracking_name, 0) for p in self.projections}

    # -- catching up ----------------------------------------------------------------------

    def wait_for(self, position: int, timeout: float = 2.0) -> bool:
        """Return once every projection has applied ``position`` (True), or after ``timeout``
        (False: the write stands, the views are still behind)."""
        deadline = time.monotonic() + timeout
        while self._position < position:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._local.acquire(timeout=remaining):
                return False
            try:
                if self._position < position:
                    self._catch_up_locked(until=position, lock_timeout=remaining)
            except Exception:  # the background runner will retry; the write stands
                log.exception("projection catch-up failed")
                return self._position >= position
            finally:
                self._local.release()
        return True

    def wait_for_others(self, position: int, timeout: float) -> bool:
        """Like ``wait_for``, but leave the work to a projection runner in another process
        (``pim serve`` projects while its worker process writes a bulk job). This process
        projects itself when no runner follows the log, or when the projection lock is free
        and the position has not moved for STALL_S (a runner wakes SETTLE_S after a write)."""
        deadline = time.monotonic() + timeout
        reached, stalled_since = -1, time.monotonic()
        while True:
            with self.pool.connection() as conn:
                now_at = min(self.tracked_positions(conn).values())
                held = {
                    int(r[0])
                    for r in conn.execute(
                        "SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks"
                        " WHERE locktype = 'advisory' AND granted AND objsubid = 1"
                        " AND database = (SELECT oid FROM pg_database"
                        "                 WHERE datname = current_database())"
                        " AND ((classid::bigint << 32) | objid::bigint) = ANY(%s)",
                        ([self.lock_key, self.runner_key],),
                    ).fetchall()
                }
            self._position = max(self._position, now_at)
            if now_at >= position:
                return True
            now = time.monotonic()
            if self.runner_key not in held:  # nobody follows the log: no one to wait for
                return self.wait_for(position, timeout=max(deadline - now, 0.001))
            if self.lock_key in held or now_at > reached:
                reached, stalled_since = now_at, now
            elif now - stalled_since > STALL_S:
                return self.wait_for(position, timeout=max(deadline - now, 0.001))
            if now >= deadline:
                return False
            time.sleep(PASSIVE_POLL_S)

    def catch_up(self) -> int:
        """Apply every pending event; returns the position reached."""
        with self._local:
            self._catch_up_locked(until=None, lock_timeout=None)
        return self._position

    def _catch_up_locked(self, until: int | None, lock_timeout: float | None) -> None:
        while True:
            applied, more = self._apply_batch(lock_timeout)
            if not more or (until is not None and self._position >= until):
                return
            if applied == 0 and until is not None and self._position >= until:
                return

    def _apply_batch(self, lock_timeout: float | None) -> tuple[int, bool]:
        with self.pool.connection() as conn, conn.transaction():
            # One round trip: bound the wait for the lock, then take it.
            timeout = f"{max(int(lock_timeout * 1000), 1)}ms" if lock_timeout else "0"
            conn.execute(
                "SELECT set_config('lock_timeout', %s, true), pg_advisory_xact_lock(%s)",
                (timeout, self.lock_key),
            )
            applied, reached, more = self.apply_pending(conn)
        self._position = max(self._position, reached)
        return applied, more

    def apply_pending(
        self, conn: psycopg.Connection[Any], *, stop: int | None = None
    ) -> tuple[int, int, bool]:
        """Apply the next batch of events (up to ``stop``) in the caller's transaction; the
        caller holds the lock. Returns (events read, position reached, whether more remain)."""
        positions = self.tracked_positions(conn)
        start = min(positions.values())
        query = sql.SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state"
            " FROM {} WHERE notification_id > %s{} ORDER BY notification_id LIMIT %s"
        ).format(
            sql.Identifier(self.events_table),
            sql.SQL(" AND notification_id <= %s") if stop is not None else sql.SQL(""),
        )
        params: list[Any] = [start, *([stop] if stop is not None else []), self.batch_size]
        rows = conn.execute(query, params).fetchall()
        for projection in self.projections:
            projection.begin()
        # Pipeline mode: the many small writes go out without waiting for each answer; the few
        # reads (in flush) wait only for what they need.
        with conn.pipeline(), conn.cursor() as cur:
            for notification_id, originator_id, version, topic, state in rows:
                if topic not in self._wanted_topics:
                    continue
                event = self.store.decode(originator_id, version, topic, without_nul(bytes(state)))
                for projection in self.projections:
                    if positions[projection.tracking_name] < notification_id:
                        projection.apply(cur, event, notification_id)
            for projection in self.projections:
                projection.flush(cur)
            reached = int(rows[-1][0]) if rows else start
            if rows or any(pos != reached for pos in positions.values()):
                cur.execute(
                    """INSERT INTO projection_tracking (name, position, updated_at)
                       SELECT unnest(%s::text[]), %s, now()
                       ON CONFLICT (name) DO UPDATE
                       SET position = GREATEST(projection_tracking.position, EXCLUDED.position),
                           updated_at = now()""",
                    ([p.tracking_name for p in self.projections], reached),
                )
        return len(rows), reached, len(rows) == self.batch_size

    # -- background loop ------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def run_forever(self, database_url: str) -> None:
        """Follow the log until stopped; restarts itself after any error (supervision)."""
        channel = self.events_table.replace(".", "_")
        while not self._stop.is_set():
            try:
                with psycopg.connect(database_url, autocommit=True) as listener:
                    listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    listener.execute("SELECT pg_advisory_lock_shared(%s)", (self.runner_key,))
                    self.catch_up()
                    while not self._stop.is_set():
                        # A lost NOTIFY only delays us until the next poll.
                        for _ in listener.notifies(timeout=POLL_INTERVAL_S, stop_after=1):
                            pass
                        # Writers catch the views up themselves (read-your-writes); this loop
                        # is for everyone else. Let a burst settle, then drain its notices,
                        # so a busy log costs one catch-up per window, not one per write.
                        self._stop.wait(SETTLE_S)
                        for _ in listener.notifies(timeout=0):
                            pass
                        self.catch_up()
            except Exception:
                if self._stop.is_set():
                    break
                log.exception("projection runner failed; restarting in 1s")
                self._stop.wait(1.0)

    def start_background(self, database_url: str) -> threading.Thread:
        thread = threading.Thread(
            target=self.run_forever,
            args=(database_url,),
            name=f"projector-{self.group}",
            daemon=True,
        )
        thread.start()
        return thread
