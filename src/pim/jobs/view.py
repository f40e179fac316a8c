"""The jobs view (lists and reads of jobs) and the dispatcher that queues their work.

The dispatcher is a projection over the jobs log: a job's creation event is the only record of
the job, and the dispatcher sends its message after the fact (at least once; the actor is
idempotent). Redis being down when a job is accepted only delays the job."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from psycopg import sql
from psycopg.types.json import Jsonb

from pim.domain.ids import entity_id_of
from pim.jobs.domain import Job
from pim.projections.base import EventHandler, Projection
from pim.projections.statements import Statements


class JobsView(Projection):
    name: ClassVar[str] = "jobs"
    table_bases: ClassVar[tuple[str, ...]] = ("jobs_view",)

    def ddl(self) -> list[str]:
        t = self.table("jobs_view")
        return [
            f"""CREATE TABLE IF NOT EXISTS {t} (
                tenant_id uuid NOT NULL, id uuid NOT NULL, type text NOT NULL,
                status text NOT NULL, dry_run boolean NOT NULL DEFAULT false,
                total_items integer NOT NULL DEFAULT 0,
                processed_items integer NOT NULL DEFAULT 0,
                succeeded_items integer NOT NULL DEFAULT 0,
                failed_items integer NOT NULL DEFAULT 0,
                created_at timestamptz NOT NULL, started_at timestamptz,
                finished_at timestamptz, created_by text NOT NULL, error text, result jsonb,
                version integer NOT NULL, updated_at timestamptz,
                PRIMARY KEY (tenant_id, id))""",
            # tables made before updated_at existed (rows there read it as their last known
            # time until a rebuild fills it)
            f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS updated_at timestamptz",
            f"CREATE INDEX IF NOT EXISTS {t}_list_idx ON {t} (tenant_id, type, created_at, id)",
            # Jobs still to run (job fairness looks for other tenants' work).
            f"CREATE INDEX IF NOT EXISTS {t}_unfinished_idx ON {t} (tenant_id)"
            " WHERE status IN ('PENDING', 'PROCESSING')",
        ]

    def _update(self, cur: Statements, event: Any, **columns: Any) -> None:
        names = list(columns)
        cur.execute(
            sql.SQL(
                "UPDATE {} SET {}, version = %s, updated_at = %s WHERE tenant_id = %s AND id = %s"
            ).format(
                sql.Identifier(self.table("jobs_view")),
                sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(n)) for n in names),
            ),
            [
                *columns.values(),
                event.originator_version,
                event.timestamp,
                event.tenant_id,
                entity_id_of(event.originator_id),
            ],
        )

    def on_created(self, cur: Statements, event: Job.Created, position: int) -> None:
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (tenant_id, id, type, status, dry_run, created_at, created_by,"
                " version, updated_at) VALUES (%s, %s, %s, 'PENDING', %s, %s, %s, %s, %s)"
            ).format(sql.Identifier(self.table("jobs_view"))),
            (
                event.tenant_id,
                entity_id_of(event.originator_id),
                event.job_type,
                event.dry_run,
                event.timestamp,
                event.actor,
                event.originator_version,
                event.timestamp,
            ),
        )

    def on_started(self, cur: Statements, event: Job.Started, position: int) -> None:
        self._update(
            cur,
            event,
            status="PROCESSING",
            total_items=event.total_items,
            started_at=event.timestamp,
        )

    def on_progressed(self, cur: Statements, event: Job.Progressed, position: int) -> None:
        self._update(
            cur,
            event,
            processed_items=event.processed,
            succeeded_items=event.succeeded,
            failed_items=event.failed,
        )

    def on_completed(self, cur: Statements, event: Job.Completed, position: int) -> None:
        self._update(
            cur,
            event,
            status="COMPLETED",
            processed_items=event.processed,
            succeeded_items=event.succeeded,
            failed_items=event.failed,
            finished_at=event.timestamp,
            result=Jsonb(event.result),
        )
        # An export learns its size only as it writes.
        cur.execute(
            sql.SQL(
                "UPDATE {} SET total_items = GREATEST(total_items, processed_items)"
                " WHERE tenant_id = %s AND id = %s"
            ).format(sql.Identifier(self.table("jobs_view"))),
            (event.tenant_id, entity_id_of(event.originator_id)),
        )

    def on_failed(self, cur: Statements, event: Job.Failed, position: int) -> None:
        self._update(cur, event, status="FAILED", finished_at=event.timestamp, error=event.reason)

    handlers: ClassVar[dict[type[Any], EventHandler]] = {
        Job.Created: on_created,
        Job.Started: on_started,
        Job.Progressed: on_progressed,
        Job.Completed: on_completed,
        Job.Failed: on_failed,
    }


class JobDispatcher(Projection):
    """Queues each new job's work; tracked like any projection, so nothing is sent twice in
    normal operation and nothing is lost (a failed send rolls back and is retried)."""

    name: ClassVar[str] = "job-dispatcher"

    def __init__(self, send: Callable[[str, str], None]) -> None:
        super().__init__()
        self.send = send

    def ddl(self) -> list[str]:
        return []

    def on_created(self, cur: Statements, event: Job.Created, position: int) -> None:
        self.send(event.tenant_id, entity_id_of(event.originator_id))

    handlers: ClassVar[dict[type[Any], EventHandler]] = {Job.Created: on_created}
