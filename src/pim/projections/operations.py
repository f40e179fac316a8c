"""Operator commands over projections: status, blue/green rebuild, verify.

- rebuild NAME fills fresh tables (suffix ``__rebuild``) from position 0 while the live tables
  keep serving, then, holding the live projector's lock, applies the last events and swaps the
  tables in one transaction. Killed halfway, it resumes from its own tracking row.
- verify NAME rebuilds into scratch tables (suffix ``__verify``), brings the live projection to
  the same position, and diffs every table row by row."""

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

from pim.bootstrap import Services
from pim.infra.database import migration_lock, run_ddl
from pim.projections.base import Projection
from pim.projections.entities import EntitiesView
from pim.projections.products import ProductsView
from pim.projections.runner import Projector
from pim.projections.stats import StatsView
from pim.projections.validation import ValidationView

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
    position: int
    head: int
    lag: int
    events_per_s: float


def projection_class(name: str) -> type[Projection]:
    try:
        return PROJECTIONS[name]
    except KeyError:
        raise UnknownProjection(
            f"unknown projection {name!r}; choose from {', '.join(PROJECTIONS)}"
        ) from None


def _head(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT COALESCE(MAX(notification_id), 0) FROM catalog_events").fetchone()
    return int(row[0]) if row else 0


def _positions(conn: psycopg.Connection[Any]) -> dict[str, int]:
    rows = conn.execute("SELECT name, position FROM projection_tracking").fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


def status(services: Services, *, sample_s: float = 1.0) -> list[ProjectionStatus]:
    """Each projection's position, lag behind the log and current throughput."""
    with psycopg.connect(services.database_url, autocommit=True) as conn:
        first = _positions(conn)
        time.sleep(sample_s)
        second = _positions(conn)
        head = _head(conn)
    return [
        ProjectionStatus(
            name=name,
            position=second.get(name, 0),
            head=head,
            lag=head - second.get(name, 0),
            events_per_s=(second.get(name, 0) - first.get(name, 0)) / sample_s,
        )
        for name in PROJECTIONS
    ]


def _drop_tables(conn: psycopg.Connection[Any], projection: Projection) -> None:
    for table in projection.tables():
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
    conn.execute("DELETE FROM projection_tracking WHERE name = %s", (projection.tracking_name,))


def _fill(services: Services, projector: Projector, label: str, show_progress: bool) -> None:
    """Apply batches until the projector is (nearly) at the head, with a progress bar."""
    with psycopg.connect(services.database_url, autocommit=True) as conn:
        head = _head(conn)
        start = projector.tracked_positions(conn)[projector.projections[0].tracking_name]
    with tqdm(
        total=head,
        initial=min(start, head),
        unit="ev",
        desc=label,
        unit_scale=True,
        disable=not show_progress,
        dynamic_ncols=True,
    ) as bar:
        while True:
            _, more = projector._apply_batch(None)
            bar.update(max(0, min(projector.position, head) - bar.n))
            if not more:
                break


@contextmanager
def _live_paused(services: Services) -> Iterator[psycopg.Connection[Any]]:
    """A transaction holding the live projector's lock: the live views cannot move."""
    with psycopg.connect(services.database_url) as conn, conn.transaction():
        conn.execute("SET LOCAL timezone = 'UTC'")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (services.projector.lock_key,))
        yield conn


def _drain(conn: psycopg.Connection[Any], projector: Projector, stop: int | None = None) -> int:
    reached = 0
    while True:
        _, reached, more = projector.apply_pending(conn, stop=stop)
        if not more:
            return reached


def rebuild(services: Services, name: str, *, show_progress: bool = True) -> int:
    """Blue/green rebuild of one projection; returns the position the new tables reached."""
    cls = projection_class(name)
    fresh = cls(table_suffix=REBUILD_SUFFIX)
    live = cls()
    with migration_lock(services.database_url) as conn:
        run_ddl(conn, fresh.ddl())  # IF NOT EXISTS: a rerun resumes the same tables
    projector = Projector(
        services.projection_pool,
        services.store,
        [fresh],
        group=f"rebuild:{name}",
        batch_size=services.settings.projection_batch_size,
    )
    _fill(services, projector, f"rebuild {name}", show_progress)
    with _live_paused(services) as conn:
        reached = _drain(conn, projector)
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
        conn.execute(
            "INSERT INTO projection_tracking (name, position, updated_at) VALUES (%s, %s, now())"
            " ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = now()",
            (live.tracking_name, reached),
        )
        conn.execute("DELETE FROM projection_tracking WHERE name = %s", (fresh.tracking_name,))
    return reached


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
    projector = Projector(
        services.projection_pool,
        services.store,
        [scratch],
        group=f"verify:{name}",
        batch_size=services.settings.projection_batch_size,
    )
    try:
        _fill(services, projector, f"verify {name}", show_progress)
        equal = True
        with _live_paused(services) as conn:
            live_position = _drain(conn, services.projector)
            _drain(conn, projector, stop=live_position)
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
