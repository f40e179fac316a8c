"""The dramatiq broker and actors, created on demand (nothing at import time).

Actors take ids, never objects, and are idempotent: dramatiq delivers at least once."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import AgeLimit, Callbacks, Pipelines, Retries, ShutdownNotifications

QUEUE_JOBS = "pim-jobs"
QUEUE_WEBHOOKS = "pim-webhooks"
# Webhook deliveries retry with exponential backoff: 1 s, 2 s, 4 s ... up to ~10 min apart.
WEBHOOK_MAX_RETRIES = 12
WEBHOOK_MIN_BACKOFF_MS = 1_000
WEBHOOK_MAX_BACKOFF_MS = 600_000


def make_broker(redis_url: str, database_url: str) -> RedisBroker:
    # One namespace per catalog database: services of different databases may share a Redis
    # without ever taking each other's messages.
    namespace = "pim-" + hashlib.sha256(database_url.encode()).hexdigest()[:12]
    broker = RedisBroker(  # type: ignore[no-untyped-call]
        url=redis_url,
        namespace=namespace,
        middleware=[AgeLimit(), ShutdownNotifications(), Callbacks(), Pipelines(), Retries()],
    )
    dramatiq.set_broker(broker)
    return broker


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
