"""Running one job to its end: the body of the ``run_job`` actor.

Idempotent and resumable: a job already finished is left alone; a job that was running when a
worker died continues from its progress aggregate; a per-job advisory lock keeps two workers
(a redelivered message) from running the same job at once."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import psycopg
from eventsourcing import persistence as es_persistence
from psycopg import sql

from pim.commands.batch import CommandBatch
from pim.commands.bus import CommandBus
from pim.domain.context import Actor
from pim.domain.errors import DomainError
from pim.domain.ids import aggregate_id
from pim.eventstore import EventStore
from pim.infra.database import advisory_lock_key
from pim.jobs import bulk
from pim.jobs.domain import Job
from pim.jobs.export import write_export
from pim.jobs.kinds import JOB_KINDS, result_url
from pim.jobs.payloads import (
    ExportPayload,
    Selection,
    parse_filters,
)
from pim.projections.tenants import TenantProjector
from pim.queries.products import ProductFilters, product_filter_sql

log = logging.getLogger(__name__)

# How many written batches the read models may lag behind a bulk job before it waits.
PROJECTION_LAG_BATCHES = 2

# Rows per round trip when exporting: memory is ~2 KB x this, whatever the catalog's size.
EXPORT_BATCH_SIZE = 500

# Failures that say nothing about the job itself: retry later instead of failing it.
TRANSIENT = (
    psycopg.OperationalError,
    es_persistence.OperationalError,
    es_persistence.InterfaceError,
)


@dataclass
class JobContext:
    database_url: str
    data_dir: Path
    catalog: EventStore
    # The one door for catalog writes: each batch of a bulk job runs through it.
    bus: CommandBus
    jobs: EventStore
    catalog_projector: TenantProjector
    jobs_projector: TenantProjector
    # Records webhook deliveries for an event and queues them: (tenant, type, data).
    notify: Callable[[str, str, dict[str, Any]], None]
    # Queues the jobs that wait for a running slot (a job just freed one).
    wake_waiting: Callable[[], None]
    batch_size: int = bulk.BATCH_SIZE
    # Jobs of one tenant that run at once; the tenant's others wait (fairness).
    jobs_per_tenant: int = 2


def resolve_ids(conn: psycopg.Connection[Any], tenant_id: str, selection: Selection) -> list[str]:
    """The products a selection names, fixed once when the job starts."""
    if selection.product_ids is not None:
        return list(dict.fromkeys(str(pid) for pid in selection.product_ids))
    filters = parse_filters(selection.filter, "payload.filter") or ProductFilters()
    condition, params = product_filter_sql(tenant_id, filters, "p")
    rows = conn.execute(
        sql.SQL(
            "SELECT p.id::text FROM products_view AS p WHERE {} ORDER BY p.created_at, p.id"
        ).format(condition),
        params,
    ).fetchall()
    return [str(r[0]) for r in rows]


class _StepAside(Exception):
    """A job stops between two batches to let other tenants' jobs run; it is re-queued and
    resumes at its next item."""


class JobRunner:
    def __init__(self, context: JobContext) -> None:
        self.ctx = context

    def run(self, tenant_id: str, job_id: str) -> None:
        """Run (or resume) a job, unless it runs elsewhere, has finished, or its tenant runs
        its share of jobs: then it waits, without holding a job process, until a job that
        ends wakes the waiting ones (or the sweeper re-sends it)."""
        ran = False
        try:
            with psycopg.connect(self.ctx.database_url, autocommit=True) as lock_conn:
                locked = lock_conn.execute(
                    "SELECT pg_try_advisory_lock(%s)", (advisory_lock_key(f"pim:job:{job_id}"),)
                ).fetchone()
                if not locked or not locked[0]:
                    log.info("job %s is running elsewhere", job_id)
                    return
                # The slot first: a job that must wait costs no load of its record (an
                # import's holds its whole payload).
                slot = self._take_tenant_slot(lock_conn, tenant_id)
                if slot is None:
                    log.info("job %s waits: tenant %s runs its share of jobs", job_id, tenant_id)
                    return
                ran = True
                job = self.ctx.jobs.find(aggregate_id(tenant_id, job_id))
                if not isinstance(job, Job) or job.finished:
                    return

                def keep_running() -> bool:
                    # A tenant's first job always runs on; its others step aside (between
                    # two batches: a job resumes where it stopped) while another tenant has
                    # work to run.
                    return slot == 0 or not self._others_have_jobs(lock_conn, tenant_id)

                self._run_guarded(job, keep_running)
        finally:
            if ran:  # its slot is free again (its session ended): waiting jobs may start
                self.ctx.wake_waiting()

    def _run_guarded(self, job: Job, keep_running: Callable[[], bool]) -> None:
        try:
            self._run(job, keep_running)
        except _StepAside:
            log.info("job %s steps aside for other tenants' jobs", job.job_id)
        except TRANSIENT:
            raise  # the message is retried with backoff; the job resumes where it was
        except Exception as exc:
            log.exception("job %s failed", job.job_id)
            # A client sees why in its own terms; internals (paths, SQL) stay in the log.
            reason = (
                exc.detail
                if isinstance(exc, DomainError)
                else f"the job stopped on an internal error ({type(exc).__name__}); "
                "the server log has the details"
            )
            self._fail(job.job_id, job.tenant_id, reason)

    def _take_tenant_slot(self, conn: psycopg.Connection[Any], tenant_id: str) -> int | None:
        """One of the tenant's ``jobs_per_tenant`` running slots (its number), held by
        ``conn``'s session (released when the job ends, or its worker dies). Beyond its first
        job, a tenant gets a slot only while no other tenant has a job to run."""
        for slot in range(self.ctx.jobs_per_tenant):
            if slot > 0 and self._others_have_jobs(conn, tenant_id):
                return None
            row = conn.execute(
                "SELECT pg_try_advisory_lock(%s)",
                (advisory_lock_key(f"pim:jobs-of:{tenant_id}:{slot}"),),
            ).fetchone()
            if row and row[0]:
                return slot
        return None

    @staticmethod
    def _others_have_jobs(conn: psycopg.Connection[Any], tenant_id: str) -> bool:
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM jobs_view WHERE status IN ('PENDING', 'PROCESSING')"
            " AND tenant_id <> %s)",
            (tenant_id,),
        ).fetchone()
        return bool(row and row[0])

    def _save_job(self, job: Job) -> None:
        position = self.ctx.jobs.save(job)
        if position is not None:
            self.ctx.jobs_projector.wait_for(job.tenant_id, position, timeout=5)

    def _fail(self, job_id: str, tenant_id: str, reason: str) -> None:
        job = self.ctx.jobs.find(aggregate_id(tenant_id, job_id))
        if isinstance(job, Job) and not job.finished:
            job.fail(job.acting, reason[:1000])
            self._save_job(job)
            self.ctx.notify(tenant_id, "bulk_job.failed", self._event_data(job))

    @staticmethod
    def _event_data(job: Job) -> dict[str, Any]:
        return {
            "job_id": job.job_id,
            "type": job.job_type,
            "status": job.status,
            "result_url": result_url(job.job_id, job.job_type, job.status),
            "total_items": job.total_items,
            "processed_items": job.processed_items,
            "succeeded_items": job.succeeded_items,
            "failed_items": job.failed_items,
        }

    def _run(self, job: Job, keep_running: Callable[[], bool]) -> None:
        kind = JOB_KINDS[job.job_type]
        payload = msgspec.convert(job.payload, kind.payload)
        actor: Actor = job.acting
        if kind.result == "file":
            assert isinstance(payload, ExportPayload)
            self._export(job, payload, actor)
            return
        assert kind.items is not None, kind
        if job.status == "PENDING":
            ids: list[str] = []
            if isinstance(payload, Selection):
                with psycopg.connect(self.ctx.database_url) as conn:
                    ids = resolve_ids(conn, job.tenant_id, payload)
            work = kind.items(actor, job.job_id, payload, ids)
            job.start(actor, len(work.items), ids if isinstance(payload, Selection) else None)
            self._save_job(job)
        else:
            work = kind.items(actor, job.job_id, payload, job.item_ids or [])
        progress = bulk.load_progress(self.ctx.catalog, actor, job.job_id)
        total = len(work.items)
        start = progress.next_index
        # Log positions of the batches written and not yet known to be projected.
        behind: deque[int] = deque()
        # The next batch is loaded on a second thread while this one is applied: its
        # queries' round trips overlap with this batch's work.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as loader:
            ahead: tuple[int, int, Future[CommandBatch]] | None = None
            while start < total:
                end = min(start + self.ctx.batch_size, total)
                prepared = None
                if ahead is not None and ahead[:2] == (start, end):
                    prepared = ahead[2].result()
                following = min(end + self.ctx.batch_size, total)
                ahead = (
                    (end, following, loader.submit(self._prepare, actor, work, end, following))
                    if end < total
                    else None
                )
                position, progress = bulk.apply_batch(
                    self.ctx.bus,
                    actor,
                    job.job_id,
                    work,
                    start,
                    end,
                    dry_run=job.dry_run,
                    progress=progress,
                    prepared=prepared,
                )
                if position is not None and not job.dry_run:
                    behind.append(position)
                if len(behind) > PROJECTION_LAG_BATCHES:
                    # Backpressure: the read models stay within a batch or two of the job
                    # (another process's projector works meanwhile; this one helps only if
                    # nobody does).
                    self.ctx.catalog_projector.wait_for_others(
                        job.tenant_id, behind.popleft(), timeout=60
                    )
                job.progress(actor, progress.next_index, progress.succeeded, progress.failed)
                self._save_job(job)
                start = progress.next_index
                if start < total and not keep_running():
                    raise _StepAside
        if behind:
            # The job's effects are in every read model before it reports COMPLETED.
            self.ctx.catalog_projector.wait_for_others(job.tenant_id, behind[-1], timeout=60)
        job.complete(
            actor,
            progress.next_index,
            progress.succeeded,
            progress.failed,
            {
                "kind": kind.result,
                "content_type": "application/x-ndjson",
                "filename": f"{job.job_type.lower()}-{job.job_id}.ndjson",
            },
        )
        self._save_job(job)
        self.ctx.notify(job.tenant_id, "bulk_job.completed", self._event_data(job))

    def _prepare(self, actor: Actor, work: bulk.BulkItems, start: int, end: int) -> CommandBatch:
        return bulk.prepare_batch(self.ctx.bus, actor, work, start, end)

    def _export(self, job: Job, payload: ExportPayload, actor: Actor) -> None:
        job.start(actor, 0)
        self._save_job(job)
        directory = self.ctx.data_dir / "exports" / job.tenant_id
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{job.job_id}.{payload.format}"
        with psycopg.connect(self.ctx.database_url) as conn:
            result = write_export(
                conn,
                tenant_id=job.tenant_id,
                fmt=payload.format,
                scope=payload.scope,
                filters=parse_filters(payload.filters, "payload.filters") or ProductFilters(),
                path=path,
                job_id=job.job_id,
                batch_size=EXPORT_BATCH_SIZE,
            )
        job.complete(
            actor,
            result.rows,
            result.rows,
            0,
            {
                "kind": "file",
                "path": str(result.path),
                "content_type": result.content_type,
                "filename": result.filename,
                "position": result.position,
                "rows": result.rows,
            },
        )
        self._save_job(job)
        data = self._event_data(job)
        self.ctx.notify(job.tenant_id, "export.completed", {**data, "position": result.position})
