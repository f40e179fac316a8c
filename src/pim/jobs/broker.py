"""The dramatiq broker and actors, created on demand (nothing at import time).

Actors take ids, never objects, and are idempotent: dramatiq delivers at least once."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AgeLimit, Callbacks, Pipelines, Retries, ShutdownNotifications

log = logging.getLogger(__name__)

QUEUE_JOBS = "pim-jobs"
SEND_TIMEOUT_S = 2.0
QUEUE_WEBHOOKS = "pim-webhooks"
# Webhook deliveries retry with exponential backoff: 1 s, 2 s, 4 s ... up to ~10 min apart.
WEBHOOK_MAX_RETRIES = 12
WEBHOOK_MIN_BACKOFF_MS = 1_000
WEBHOOK_MAX_BACKOFF_MS = 600_000


def broker_namespace(database_url: str) -> str:
    """One namespace per catalog database: services of different databases may share a Redis
    without ever taking each other's messages."""
    return "pim-" + hashlib.sha256(database_url.encode()).hexdigest()[:12]


def make_broker(redis_url: str, database_url: str) -> RedisBroker:
    broker = RedisBroker(  # type: ignore[no-untyped-call]
        url=redis_url,
        namespace=broker_namespace(database_url),
        middleware=[AgeLimit(), ShutdownNotifications(), Callbacks(), Pipelines(), Retries()],
    )
    dramatiq.set_broker(broker)
    return broker


class JobQueue:
    """Queues a job's message from a process that does not run jobs (the API), right after
    the job was recorded. Only a shortcut: the worker's dispatcher sends every new job's
    message from the jobs log anyway (the outbox, decision 0009), so a send that fails here
    (Redis down) only delays the job, and the second message is ignored by the job's lock."""

    def __init__(self, redis_url: str, database_url: str) -> None:
        self._redis_url = redis_url
        self._namespace = broker_namespace(database_url)
        self._broker: RedisBroker | None = None
        self._lock = threading.Lock()

    def _get_broker(self) -> RedisBroker:
        with self._lock:
            if self._broker is None:
                broker = RedisBroker(  # type: ignore[no-untyped-call]
                    url=self._redis_url,
                    namespace=self._namespace,
                    middleware=[],
                    socket_timeout=SEND_TIMEOUT_S,
                    socket_connect_timeout=SEND_TIMEOUT_S,
                )
                broker.declare_queue(QUEUE_JOBS)
                self._broker = broker
            return self._broker

    def send(self, tenant_id: str, job_id: str) -> None:
        """Queue the job now; failures are logged, never raised (the dispatcher will)."""
        try:
            self._get_broker().enqueue(
                dramatiq.Message(
                    queue_name=QUEUE_JOBS,
                    actor_name="run_job",
                    args=(tenant_id, job_id),
                    kwargs={},
                    options={},
                )
            )
        except Exception as exc:
            log.info("job %s not queued directly (%s); the dispatcher will", job_id, exc)

    def close(self) -> None:
        with self._lock:
            if self._broker is not None:
                self._broker.close()
                self._broker = None


@dataclass(frozen=True)
class Actors:
    run_job: dramatiq.Actor[[str, str], None]
    deliver_webhook: dramatiq.Actor[[str], None]


def register_actors(
    broker: RedisBroker,
    *,
    run_job: Callable[[str, str], None],
    deliver_webhook: Callable[[str], None],
) -> Actors:
    """Bind the job and webhook functions to the broker as actors."""
    job_actor: Any = dramatiq.actor(
        actor_name="run_job",
        queue_name=QUEUE_JOBS,
        broker=broker,
        max_retries=20,
        min_backoff=1_000,
        max_backoff=60_000,
    )(run_job)
    webhook_actor: Any = dramatiq.actor(
        actor_name="deliver_webhook",
        queue_name=QUEUE_WEBHOOKS,
        broker=broker,
        max_retries=WEBHOOK_MAX_RETRIES,
        min_backoff=WEBHOOK_MIN_BACKOFF_MS,
        max_backoff=WEBHOOK_MAX_BACKOFF_MS,
    )(deliver_webhook)
    return Actors(run_job=job_actor, deliver_webhook=webhook_actor)
