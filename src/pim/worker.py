"""The worker: dramatiq actors for jobs and webhook deliveries, the dispatcher that queues new
jobs, and a sweeper that re-queues work whose message was lost (Redis keeps nothing on disk).

``pim worker`` is one main process and a few job processes (``PIM_JOB_PROCESSES``). The main
process runs the dispatcher, the sweeper and webhook deliveries; each job process runs one job
at a time. A job is Python-bound: jobs sharing one process take turns on its interpreter lock,
so one tenant's imports would slow another tenant's export three-fold. In processes of their
own, they share the CPU as the operating system schedules them (decision 0018)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import dramatiq
import psycopg

from pim.jobs.broker import QUEUE_JOBS, QUEUE_WEBHOOKS, Actors, make_broker, register_actors
from pim.jobs.runner import JobContext, JobRunner
from pim.jobs.view import JobDispatcher
from pim.projections.runner import GlobalProjector
from pim.services import Services
from pim.webhooks.delivery import deliver
from pim.webhooks.store import record_event, stale_deliveries

log = logging.getLogger(__name__)

# How long an idle worker may sleep between polls of Redis (ms). dramatiq's default (1000)
# made every job wait 0.5-1 s before it started once the worker had been idle a while; 100 ms
# costs an idle worker ~20 cheap Redis calls a second.
IDLE_POLL_MS = 100
# Unfinished jobs, each tenant's oldest first, then the second oldest of each, ...
WAITING_JOBS = """
    SELECT tenant_id::text, id::text FROM (
        SELECT tenant_id, id, created_at,
               row_number() OVER (PARTITION BY tenant_id ORDER BY created_at, id) AS turn
          FROM jobs_view WHERE status IN ('PENDING', 'PROCESSING')) AS unfinished
     ORDER BY turn, created_at, id LIMIT %s
"""


@dataclass
class WorkerHandle:
    worker: dramatiq.Worker
    stop_event: threading.Event
    dispatcher: GlobalProjector | None = None

    def stop(self) -> None:
        self.stop_event.set()
        if self.dispatcher is not None:
            self.dispatcher.stop()
        self.worker.stop(timeout=10_000)


def _actors(services: Services, *, run_job: Any) -> Actors:
    settings = services.settings
    assert settings.redis_url is not None
    broker = make_broker(settings.redis_url, services.database_url)
    return register_actors(
        broker,
        run_job=run_job,
        deliver_webhook=lambda delivery_id: deliver(
            services.database_url, delivery_id, allow_private=settings.webhook_allow_private
        ),
    )


def start_main(services: Services, *, threads: int = 4) -> WorkerHandle:
    """The main worker process's part (background threads): webhook deliveries, the job
    dispatcher and the sweeper. Jobs run in job processes (``start_job_process``)."""

    def not_here(tenant_id: str, job_id: str) -> None:  # pragma: no cover - never consumed
        raise RuntimeError("jobs run in job processes")

    actors = _actors(services, run_job=not_here)

    def queue_job(tenant_id: str, job_id: str) -> None:
        actors.run_job.send(tenant_id, job_id)

    dispatcher = GlobalProjector(
        services.projection_pool,
        services.jobs,
        [JobDispatcher(queue_job)],
        group="job-dispatch",
        events_table="jobs_events",
    )
    worker = dramatiq.Worker(
        actors.run_job.broker,
        queues={QUEUE_WEBHOOKS},
        worker_threads=threads,
        worker_timeout=IDLE_POLL_MS,
    )
    worker.start()
    dispatcher.start_background(services.database_url)
    stop_event = threading.Event()
    threading.Thread(
        target=_sweep, args=(services, actors, stop_event), daemon=True, name="sweeper"
    ).start()
    return WorkerHandle(worker, stop_event, dispatcher)


def start_job_process(services: Services) -> WorkerHandle:
    """A job process's part: one job at a time. It takes a message only when it is free
    (prefetch 1), so a message waits in Redis for the first free job process instead of
    queueing behind a long job."""
    settings = services.settings
    holder: dict[str, Actors] = {}

    def notify(tenant_id: str, event_type: str, data: dict[str, Any]) -> None:
        with psycopg.connect(services.database_url) as conn:
            delivery_ids = record_event(conn, tenant_id, event_type, data)
            conn.commit()
        for delivery_id in delivery_ids:
            try:
                holder["actors"].deliver_webhook.send(delivery_id)
            except Exception:  # the sweeper re-queues it
                log.warning("could not queue webhook delivery %s", delivery_id)

    def wake_waiting() -> None:
        """Queue unfinished jobs, the oldest of each tenant first: those waiting for a slot
        start now if they may (a running one's message is a no-op: its lock is held)."""
        try:
            with psycopg.connect(services.database_url, autocommit=True) as conn:
                rows = conn.execute(WAITING_JOBS, (2 * settings.job_processes + 2,)).fetchall()
            for tenant_id, job_id in rows:
                holder["actors"].run_job.send(tenant_id, job_id)
        except Exception as exc:  # the sweeper re-sends them
            log.warning("could not wake waiting jobs: %s", exc)

    runner = JobRunner(
        JobContext(
            database_url=services.database_url,
            data_dir=settings.data_dir,
            catalog=services.store,
            bus=services.bus,
            jobs=services.jobs,
            catalog_projector=services.projector,
            jobs_projector=services.jobs_projector,
            notify=notify,
            wake_waiting=wake_waiting,
            batch_size=settings.job_batch_size,
            jobs_per_tenant=settings.jobs_per_tenant,
        )
    )
    actors = holder["actors"] = _actors(services, run_job=runner.run)
    worker = dramatiq.Worker(
        actors.run_job.broker, queues={QUEUE_JOBS}, worker_threads=1, worker_timeout=IDLE_POLL_MS
    )
    worker.queue_prefetch = 1
    worker.start()
    return WorkerHandle(worker, threading.Event())


def _sweep(services: Services, actors: Actors, stop: threading.Event) -> None:
    """Re-queue unfinished jobs and undelivered webhooks whose message may be lost (a worker
    killed mid-job, Redis restarted empty). Duplicates are harmless: a running job holds its
    lock, a finished one is skipped."""
    interval = services.settings.sweep_interval_s
    while not stop.wait(interval):
        try:
            with psycopg.connect(services.database_url, autocommit=True) as conn:
                jobs = conn.execute(
                    "SELECT tenant_id::text, id::text FROM jobs_view WHERE status IN"
                    " ('PENDING', 'PROCESSING') AND created_at < now() - make_interval(secs => %s)",
                    (interval,),
                ).fetchall()
                deliveries = stale_deliveries(conn)
            # Running jobs hold a lock: a duplicate message for one of them returns at once.
            for tenant_id, job_id in jobs:
                actors.run_job.send(tenant_id, job_id)
            for delivery_id in deliveries:
                actors.deliver_webhook.send(delivery_id)
        except Exception:
            log.warning("sweep failed; retrying in %ss", interval)
