"""What a running process has: every service, built once from the settings by the composition
root (``bootstrap.build_services``) and handed to the API, the worker and the operators'
commands. Only the entry points build it; everything else receives it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg_pool import ConnectionPool

from pim.auth.tokens import TokenVerifier
from pim.commands.bus import CommandBus
from pim.eventstore import CatalogApplication, EventStore, JobsApplication
from pim.jobs.broker import JobQueue
from pim.projections.tenants import TenantProjector
from pim.settings import Settings


@dataclass
class Services:
    settings: Settings
    database_url: str
    catalog: CatalogApplication
    store: EventStore
    projector: TenantProjector
    bus: CommandBus
    projection_pool: ConnectionPool[Any]
    verifier: TokenVerifier
    jobs_app: JobsApplication
    jobs: EventStore
    jobs_projector: TenantProjector
    job_queue: JobQueue | None  # None without Redis (operators' commands)

    def close(self) -> None:
        self.projector.stop()
        self.jobs_projector.stop()
        if self.job_queue is not None:
            self.job_queue.close()
        self.projection_pool.close()
        self.catalog.close()
        self.jobs_app.close()
