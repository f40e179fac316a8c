"""Runs projections over a log: the shared machinery of catching views up.

A projector applies a log's events to a set of projections. It keeps a position per
projection and per *scope*, and catches a scope up under an advisory lock, writing views and
positions in one transaction, so a view never skips or repeats an event:

- ``GlobalProjector`` has one scope, the whole log (the jobs log, appended in global order);
- ``TenantProjector`` (projections/tenants.py) has one scope per tenant (the catalog log,
  appended in per-tenant order): one tenant's read-your-writes never waits on another
  tenant's events.

Two drivers share one code path: a request that has just written calls ``wait_for(scope,
position)``, which catches the scope up itself if nobody has yet (read-your-writes within
milliseconds, no polling floor); a background loop (``run_forever``) catches up what other
processes wrote.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from pim.eventstore import EventStore
from pim.infra.database import advisory_lock_key, log_failure
from pim.projections.base import Projection, without_nul
from pim.projections.statements import Statements

log = logging.getLogger(__name__)

# Positions of projections that follow a whole log; for per-tenant projections, the floor
# every tenant starts from (the position a log was projected to before positions were kept
# per tenant; 0 for a log projected per tenant from the start).
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

Row = tuple[Any, ...]


class Projector(ABC):
    """Applies a log's events to projections, scope by scope (see the module docstring)."""

    def __init__(
        self,
        pool: ConnectionPool[Any],
        store: EventStore,
        projections: Sequence[Projection],
        *,
        group: str,
        events_table: str,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.batch_size = batch_size
        self.pool = pool
        self.store = store
        self.projections = list(projections)
        self.names = [p.tracking_name for p in self.projections]
        self.group = group
        self.events_table = events_table
        self._wanted_topics = set().union(*(p.topics() for p in self.projections))
        # scope -> lowest position every projection is known to have applied (only grows)
        self._known: dict[str, int] = {}
        # One catcher per scope per process at a time: the others wait here, not holding a
        # pool connection while they queue on the advisory lock.
        self._local: dict[str, threading.Lock] = {}
        self._local_guard = threading.Lock()
        # Each thread applies batches with projection instances of its own (batch state).
        self._threads = threading.local()
        self._stop = threading.Event()

    # -- schema ---------------------------------------------------------------------------

    @staticmethod
    def ddl_for(projections: Sequence[Projection]) -> list[str]:
        statements = list(TRACKING_DDL)
        for projection in projections:
            statements.extend(projection.ddl())
        return statements

    # -- what a scope is (subclasses) ------------------------------------------------------

    @abstractmethod
    def lock(self, stmts: Statements, scope: str, timeout: float | None) -> None:
        """Take the scope's advisory lock for the batch's transaction (bounded wait)."""

    @abstractmethod
    def positions(self, conn: psycopg.Connection[Any], scope: str) -> dict[str, int]:
        """Each projection's position in the scope."""

    @abstractmethod
    def read_batch(
        self, stmts: Statements, scope: str, stop: int | None
    ) -> tuple[dict[str, int], list[Row]]:
        """The projections' positions in the scope, and the scope's next events after the
        lowest (up to ``stop``), at most batch_size: (position, originator_id, version,
        topic, state)."""

    @abstractmethod
    def record(self, stmts: Statements, scope: str, reached: int) -> None:
        """Move every projection's position in the scope to ``reached``."""

    # -- positions ------------------------------------------------------------------------

    def known(self, scope: str) -> int:
        """The position this process knows every projection has applied in ``scope``."""
        return self._known.get(scope, 0)

    def _learn(self, scope: str, position: int) -> None:
        if position > self._known.get(scope, 0):
            self._known[scope] = position

    def _local_lock(self, scope: str) -> threading.Lock:
        with self._local_guard:
            found = self._local.get(scope)
            if found is None:
                found = self._local[scope] = threading.Lock()
            return found

    # -- catching up ----------------------------------------------------------------------

    def wait_for(self, scope: str, position: int, timeout: float = 2.0) -> bool:
        """Return once every projection has applied ``position`` in ``scope`` (True), or
        after ``timeout`` (False: the write stands, the views are still behind)."""
        deadline = time.monotonic() + timeout
        local = self._local_lock(scope)
        while self.known(scope) < position:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not local.acquire(timeout=remaining):
                return False
            try:
                if self.known(scope) < position:
                    self._catch_up_locked(scope, until=position, lock_timeout=remaining)
            except Exception as exc:  # a runner will retry; the write stands
                log_failure(log, "projection catch-up failed", exc)
                return self.known(scope) >= position
            finally:
                local.release()
        return True

    def catch_up(self, scope: str) -> int:
        """Apply every pending event of ``scope``; returns the position reached."""
        with self._local_lock(scope):
            self._catch_up_locked(scope, until=None, lock_timeout=None)
        return self.known(scope)

    def _catch_up_locked(self, scope: str, until: int | None, lock_timeout: float | None) -> None:
        while True:
            _, more = self.apply_batch(scope, lock_timeout)
            if not more or (until is not None and self.known(scope) >= until):
                return

    def apply_batch(self, scope: str, lock_timeout: float | None = None) -> tuple[int, bool]:
        """One transaction: lock the scope, apply its next batch. (events read, more left)

        Two round trips however many statements the projections make (see Statements):
        BEGIN, the lock and the read go out together, then every write, the new positions
        and COMMIT (a projection that reads while it applies adds a round trip)."""
        with self.pool.connection() as conn:
            stmts = Statements(conn)
            try:
                stmts.execute("BEGIN")
                self.lock(stmts, scope, lock_timeout)
                applied, reached, more = self.apply_pending(stmts, scope)
                stmts.execute("COMMIT")
                stmts.flush()
            except BaseException:
                stmts.abandon()
                raise
        self._learn(scope, reached)
        return applied, more

    def apply_pending(
        self, stmts: Statements, scope: str, *, stop: int | None = None
    ) -> tuple[int, int, bool]:
        """Apply the scope's next batch of events (up to ``stop``) in the caller's
        transaction; the caller holds the scope's lock and sends what is queued. Returns
        (events read, position reached, whether more remain)."""
        positions, rows = self.read_batch(stmts, scope, stop)
        start = min(positions.values())
        projections = self._thread_projections()
        for projection in projections:
            projection.begin()
        for notification_id, originator_id, version, topic, state in rows:
            if topic not in self._wanted_topics:
                continue
            event = self.store.decode(originator_id, version, topic, without_nul(bytes(state)))
            for projection in projections:
                if positions[projection.tracking_name] < notification_id:
                    projection.apply(stmts, event, notification_id)
        for projection in projections:
            projection.flush(stmts)
        reached = int(rows[-1][0]) if rows else start
        if rows or any(pos != reached for pos in positions.values()):
            self.record(stmts, scope, reached)
        return len(rows), reached, len(rows) == self.batch_size

    def _thread_projections(self) -> list[Projection]:
        mine: list[Projection] | None = getattr(self._threads, "projections", None)
        if mine is None:
            mine = self._threads.projections = [p.clone() for p in self.projections]
        return mine

    # -- background loop ------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    @abstractmethod
    def run_forever(self, database_url: str) -> None:
        """Follow the log until stopped, restarting after errors (supervision)."""

    def start_background(self, database_url: str) -> threading.Thread:
        thread = threading.Thread(
            target=self.run_forever,
            args=(database_url,),
            name=f"projector-{self.group}",
            daemon=True,
        )
        thread.start()
        return thread


GLOBAL = ""  # the one scope of a GlobalProjector


class GlobalProjector(Projector):
    """Projections of a whole log appended in global order (the jobs log): one scope, one
    position per projection (``projection_tracking``), one advisory lock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lock_key = advisory_lock_key(f"pim:{self.group}")

    def lock(self, stmts: Statements, scope: str, timeout: float | None) -> None:
        stmts.execute(
            "SELECT set_config('lock_timeout', %s, true), pg_advisory_xact_lock(%s)",
            (_timeout_ms(timeout), self.lock_key),
        )

    def positions(self, conn: psycopg.Connection[Any], scope: str) -> dict[str, int]:
        rows = conn.execute(
            "SELECT name, position FROM projection_tracking WHERE name = ANY(%s)", (self.names,)
        ).fetchall()
        found = {str(r[0]): int(r[1]) for r in rows}
        return {name: found.get(name, 0) for name in self.names}

    def read_batch(
        self, stmts: Statements, scope: str, stop: int | None
    ) -> tuple[dict[str, int], list[Row]]:
        found = {
            str(r[0]): int(r[1])
            for r in stmts.read(
                "SELECT name, position FROM projection_tracking WHERE name = ANY(%s)",
                (self.names,),
            )
        }
        positions = {name: found.get(name, 0) for name in self.names}
        query = sql.SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state"
            " FROM {} WHERE notification_id > %s AND notification_id <= %s"
            " ORDER BY notification_id LIMIT %s"
        ).format(sql.Identifier(self.events_table))
        upto = stop if stop is not None else 2**63 - 1
        rows = stmts.read(query, (min(positions.values()), upto, self.batch_size))
        return positions, rows

    def record(self, stmts: Statements, scope: str, reached: int) -> None:
        stmts.execute(
            """INSERT INTO projection_tracking (name, position, updated_at)
               SELECT unnest(%s::text[]), %s, now()
               ON CONFLICT (name) DO UPDATE
               SET position = GREATEST(projection_tracking.position, EXCLUDED.position),
                   updated_at = now()""",
            (self.names, reached),
        )

    def run_forever(self, database_url: str) -> None:
        channel = self.events_table.replace(".", "_")
        while not self._stop.is_set():
            try:
                with psycopg.connect(database_url, autocommit=True) as listener:
                    listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    self.catch_up(GLOBAL)
                    while not self._stop.is_set():
                        # A lost NOTIFY only delays us until the next poll.
                        for _ in listener.notifies(timeout=POLL_INTERVAL_S, stop_after=1):
                            pass
                        # Let a burst settle, then drain its notices: a busy log costs one
                        # catch-up per window, not one per write.
                        self._stop.wait(SETTLE_S)
                        for _ in listener.notifies(timeout=0):
                            pass
                        self.catch_up(GLOBAL)
            except Exception as exc:
                if self._stop.is_set():
                    break
                log_failure(log, f"projection runner {self.group} failed; restarting in 1s", exc)
                self._stop.wait(1.0)


def _timeout_ms(timeout: float | None) -> str:
    return f"{max(int(timeout * 1000), 1)}ms" if timeout else "0"
