"""Operator commands over projections: status, blue/green rebuild, verify.

Positions are kept per tenant (projections/tenants.py), so both commands work tenant by
tenant, in log order within each tenant:

- rebuild NAME fills fresh tables (suffix ``__rebuild``) from position 0 while the live tables
  keep serving, then, pausing every live catcher of the catalog (the group's pause lock),
  applies the last events and swaps tables and positions in one transaction. Killed halfway,
  it resumes from the fresh tables' own positions.
- verify NAME rebuilds into scratch tables (suffix ``__verify``), then, with the live
  projections paused and caught up, brings the scratch tables to the live positions tenant by
  tenant and diffs every table row by row."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from tqdm import tqdm

from pim.eventstore import EVENTS_TABLE, HEADS_TABLE, PARTITIONS
from pim.infra.database import migration_lock, run_ddl
from pim.projections.base import Projection
from pim.projections.entities import EntitiesView
from pim.projections.products import ProductsView
from pim.projections.statements import Statements
from pim.projections.stats import StatsView
from pim.projections.tenants import TenantProjector
from pim.projections.validation import ValidationView
from pim.services import Services

PROJECTIONS: dict[str, type[Projection]] = {
    cls.name: cls for cls in (ProductsView, EntitiesView, StatsView, ValidationView)
}
REBUILD_SUFFIX = "__rebuild"
VERIFY_SUFFIX = "__verify"
MAX_DIFF_ROWS = 20


class UnknownProjection(ValueError):
    pass


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    tenants: int  # tenants with events in the log
    behind: int  # of them, how many this projection has not caught up
    lag: int  # events not yet applied
    events_per_s: float


@dataclass(frozen=True)
class PartitionStatus:
    partition: int
    runner: str | None  # the background runner that claimed it (None: nobody)
    tenants: int
    behind: int
    lag: int  # events the slowest projection has not applied yet
    events_per_s: float


def projection_class(name: str) -> type[Projection]:
    try:
        return PROJECTIONS[name]
    except KeyError:
        raise UnknownProjection(
            f"unknown projection {name!r}; choose from {', '.join(PROJECTIONS)}"
        ) from None


# -- status ---------------------------------------------------------------------------------

# Per (projection, tenant): partition, position (the floor when it has no row) and the events
# after it.
_TENANT_STATES = sql.SQL(
    """SELECT n.name, h.tenant_id, h.partition, COALESCE(p.position, f.position, 0),
              (SELECT count(*) FROM {events} e
                WHERE split_part(e.originator_id, ':', 1) = h.tenant_id
                  AND e.notification_id > COALESCE(p.position, f.position, 0))
         FROM {heads} h CROSS JOIN unnest(%s::text[]) AS n(name)
         LEFT JOIN projection_positions p ON p.name = n.name AND p.tenant_id = h.tenant_id
         LEFT JOIN projection_tracking f ON f.name = n.name"""
).format(events=sql.Identifier(EVENTS_TABLE), heads=sql.Identifier(HEADS_TABLE))

# Events of each tenant applied between two samples: (name, tenant, from, to) -> count.
_APPLIED_BETWEEN = sql.SQL(
    """SELECT r.name, r.tenant_id,
              (SELECT count(*) FROM {events} e
                WHERE split_part(e.originator_id, ':', 1) = r.tenant_id
                  AND e.notification_id > r.a AND e.notification_id <= r.b)
         FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[])
              AS r(name, tenant_id, a, b)"""
).format(events=sql.Identifier(EVENTS_TABLE))

_RUNNERS = """
    SELECT (l.classid::bigint << 32) | l.objid::bigint, a.application_name, a.pid
      FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND ((l.classid::bigint << 32) | l.objid::bigint) = ANY(%s)
"""


def status(
    services: Services, *, sample_s: float = 1.0
) -> tuple[list[ProjectionStatus], list[PartitionStatus]]:
    """Each projection's and each partition's tenants, lag and throughput."""
    projector = services.projector
    names = list(PROJECTIONS)
    with psycopg.connect(services.database_url, autocommit=True) as conn:
        first = conn.execute(_TENANT_STATES, (names,)).fetchall()
        time.sleep(sample_s)
        second = conn.execute(_TENANT_STATES, (names,)).fetchall()
        before = {(r[0], r[1]): int(r[3]) for r in first}
        moved = [(r[0], r[1], before.get((r[0], r[1]), 0), int(r[3])) for r in second]
        moved = [m for m in moved if m[3] > m[2]]
        applied = {
            (str(r[0]), str(r[1])): int(r[2])
            for r in conn.execute(
                _APPLIED_BETWEEN,
                (
                    [m[0] for m in moved],
                    [m[1] for m in moved],
                    [m[2] for m in moved],
                    [m[3] for m in moved],
                ),
            ).fetchall()
        }
        keys = {projector.partition_key(p): p for p in range(PARTITIONS)}
        runners = {
            keys[int(r[0])]: f"{r[1] or 'pid'} (backend {r[2]})"
            for r in conn.execute(_RUNNERS, (list(keys),)).fetchall()
        }
    projections = []
    for name in names:
        rows = [r for r in second if r[0] == name]
        projections.append(
            ProjectionStatus(
                name=name,
                tenants=len(rows),
                behind=sum(1 for r in rows if int(r[4]) > 0),
                lag=sum(int(r[4]) for r in rows),
                events_per_s=sum(n for (nm, _), n in applied.items() if nm == name) / sample_s,
            )
        )
    partitions = []
    for partition in range(PARTITIONS):
        rows = [r for r in second if int(r[2]) == partition]
        tenants = {str(r[1]) for r in rows}
        lags: dict[str, int] = {}
        for r in rows:  # a tenant's lag is its slowest projection's
            lags[str(r[1])] = max(lags.get(str(r[1]), 0), int(r[4]))
        rates: dict[str, int] = {}
        for (_, tenant), n in applied.items():
            if tenant in tenants:
                rates[tenant] = max(rates.get(tenant, 0), n)
        partitions.append(
            PartitionStatus(
                partition=partition,
                runner=runners.get(partition),
                tenants=len(tenants),
                behind=sum(1 for lag in lags.values() if lag > 0),
                lag=sum(lags.values()),
                events_per_s=sum(rates.values()) / sample_s,
            )
        )
    return projections, partitions


# -- rebuild and verify ---------------------------------------------------------------------


def _drop_tables(conn: psycopg.Connection[Any], projection: Projection) -> None:
    for table in projection.tables():
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
    conn.execute("DELETE FROM projection_positions WHERE name = %s", (projection.tracking_name,))
    conn.execute("DELETE FROM projection_tracking WHERE name = %s", (projection.tracking_name,))


def _side_projector(services: Services, projection: Projection, group: str) -> TenantProjector:
    """A projector over the catalog log for fresh or scratch tables (its own locks)."""
    return TenantProjector(
        services.projection_pool,
        services.store,
        [projection],
        group=group,
        events_table=EVENTS_TABLE,
        batch_size=services.settings.projection_batch_size,
    )


def _remaining(conn: psycopg.Connection[Any], name: str) -> int:
    """Events of every tenant after projection ``name``'s position (for the progress bar)."""
    row = conn.execute(
        sql.SQL(
            "SELECT count(*) FROM {} e LEFT JOIN projection_positions p ON p.name = %s"
            " AND p.tenant_id = split_part(e.originator_id, ':', 1)"
            " WHERE e.notification_id > COALESCE(p.position, 0)"
        ).format(sql.Identifier(EVENTS_TABLE)),
        (name,),
    ).fetchone()
    return int(row[0]) if row else 0


def _fill(services: Services, projector: TenantProjector, label: str, show_progress: bool) -> None:
    """One pass over every tenant with events to apply, batch by batch, with a progress bar
    (what is written meanwhile is applied by the caller's final drain)."""
    with psycopg.connect(services.database_url, autocommit=True) as conn:
        total = _remaining(conn, projector.names[0])
        tenants = projector.pending(conn)
    with tqdm(
        total=total,
        unit="ev",
        desc=label,
        disable=not show_progress,
        dynamic_ncols=True,
    ) as bar:
        for tenant in tenants:
            while True:
                applied, more = projector.apply_batch(tenant)
                bar.update(min(applied, max(0, total - bar.n)))
                if not more:
                    break


@contextmanager
def _live_paused(services: Services) -> Iterator[psycopg.Connection[Any]]:
    """A transaction holding the live projections' pause lock: no live view moves."""
    with psycopg.connect(services.database_url) as conn, conn.transaction():
        conn.execute("SET LOCAL timezone = 'UTC'")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (services.projector.pause_key,))
        yield conn


def _drain(
    conn: psycopg.Connection[Any],
    projector: TenantProjector,
    tenant_id: str,
    stop: int | None = None,
) -> int:
    """Apply a tenant's events (up to ``stop``) in the caller's transaction, which holds the
    group's pause lock; returns the position reached."""
    stmts = Statements(conn)
    stmts.execute("SELECT pg_advisory_xact_lock(%s)", (projector.tenant_key(tenant_id),))
    while True:
        _, reached, more = projector.apply_pending(stmts, tenant_id, stop=stop)
        stmts.flush()
        if not more:
            return reached


def rebuild(services: Services, name: str, *, show_progress: bool = True) -> int:
    """Blue/green rebuild of one projection; returns the newest position it applied."""
    cls = projection_class(name)
    fresh = cls(table_suffix=REBUILD_SUFFIX)
    live = cls()
    with migration_lock(services.database_url) as conn:
        run_ddl(conn, fresh.ddl())  # IF NOT EXISTS: a rerun resumes the same tables
    projector = _side_projector(services, fresh, f"rebuild:{name}")
    _fill(services, projector, f"rebuild {name}", show_progress)
    with _live_paused(services) as conn:
        for tenant in projector.pending(conn):
            _drain(conn, projector, tenant)
        for base, table in zip(live.tables(), fresh.tables(), strict=True):
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(base)))
            conn.execute(
                sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                    sql.Identifier(table), sql.Identifier(base)
                )
            )
            indexes = conn.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = %s", (base,)
            ).fetchall()
            for (index,) in indexes:
                if REBUILD_SUFFIX in index:
                    conn.execute(
                        sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                            sql.Identifier(index), sql.Identifier(index.replace(REBUILD_SUFFIX, ""))
                        )
                    )
        # The fresh positions become the live ones; the floor of a log projected before
        # positions were per tenant no longer applies to the rebuilt tables.
        conn.execute("DELETE FROM projection_positions WHERE name = %s", (live.tracking_name,))
        conn.execute(
            "UPDATE projection_positions SET name = %s WHERE name = %s",
            (live.tracking_name, fresh.tracking_name),
        )
        conn.execute(
            "DELETE FROM projection_tracking WHERE name = ANY(%s)",
            ([live.tracking_name, fresh.tracking_name],),
        )
        row = conn.execute(
            "SELECT COALESCE(max(position), 0) FROM projection_positions WHERE name = %s",
            (live.tracking_name,),
        ).fetchone()
    return int(row[0]) if row else 0


def _rows(conn: psycopg.Connection[Any], left: str, right: str) -> list[dict[str, Any]]:
    cur = conn.execute(
        sql.SQL(
            "SELECT to_jsonb(d) FROM (SELECT * FROM {} EXCEPT ALL SELECT * FROM {}) d LIMIT %s"
        ).format(sql.Identifier(left), sql.Identifier(right)),
        (MAX_DIFF_ROWS,),
    )
    return [row[0] for row in cur.fetchall()]


def verify(
    services: Services,
    name: str,
    *,
    show_progress: bool = True,
    report: Callable[[str], None] = print,
) -> bool:
    """Rebuild into scratch tables and diff them with the live ones; True when equal."""
    cls = projection_class(name)
    scratch = cls(table_suffix=VERIFY_SUFFIX)
    with migration_lock(services.database_url) as conn:
        _drop_tables(conn, scratch)
        run_ddl(conn, scratch.ddl())
    projector = _side_projector(services, scratch, f"verify:{name}")
    live = services.projector
    try:
        _fill(services, projector, f"verify {name}", show_progress)
        equal = True
        with _live_paused(services) as conn:
            tenants = [
                str(r[0])
                for r in conn.execute(
                    sql.SQL("SELECT tenant_id FROM {}").format(sql.Identifier(HEADS_TABLE))
                ).fetchall()
            ]
            for tenant in tenants:
                live_position = _drain(conn, live, tenant)
                _drain(conn, projector, tenant, stop=live_position)
            for live_table, scratch_table in zip(cls().tables(), scratch.tables(), strict=True):
                only_live = _rows(conn, live_table, scratch_table)
                only_rebuilt = _rows(conn, scratch_table, live_table)
                for label, rows in (("live only", only_live), ("rebuilt only", only_rebuilt)):
                    for row in rows:
                        equal = False
                        report(f"{live_table}: {label}: {json.dumps(row, sort_keys=True)}")
        return equal
    finally:
        with migration_lock(services.database_url) as conn:
            _drop_tables(conn, scratch)
