"""Wiring: builds every service from one Settings object. Nothing here runs at import time."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from psycopg_pool import ConnectionPool

from pim.auth.tokens import TokenVerifier, load_or_create_secret
from pim.commands.bus import CommandBus
from pim.eventstore import (
    EVENTS_TABLE,
    JOBS_EVENTS_TABLE,
    SNAPSHOTS_DDL,
    SNAPSHOTS_TABLE,
    CatalogApplication,
    EventStore,
    JobsApplication,
)
from pim.eventstore.recorders import backfill_heads
from pim.infra.database import POOL_TIMEOUT_S, eventsourcing_env, migration_lock, run_ddl
from pim.infra.idempotency import IDEMPOTENCY_DDL
from pim.jobs.broker import JobQueue
from pim.jobs.view import JobsView
from pim.projections.base import Projection
from pim.projections.entities import EntitiesView
from pim.projections.products import ProductsView
from pim.projections.runner import Projector
from pim.projections.stats import StatsView
from pim.projections.tenants import POSITIONS_DDL, TenantProjector
from pim.projections.validation import ValidationView
from pim.settings import Settings
from pim.webhooks.store import WEBHOOKS_DDL

log = logging.getLogger(__name__)


def connection_kwargs(*, statement_timeout_s: int | None = None) -> dict[str, Any]:
    """Every session speaks UTC (timestamps leave the database as RFC 3339 UTC) and gives up
    connecting after POOL_TIMEOUT_S; ``statement_timeout_s`` bounds every statement."""
    options = "-c timezone=UTC"
    if statement_timeout_s is not None:
        options += f" -c statement_timeout={statement_timeout_s * 1000}"
    return {"options": options, "autocommit": True, "connect_timeout": POOL_TIMEOUT_S}


def catalog_projections() -> list[Projection]:
    return [ProductsView(), EntitiesView(), StatsView(), ValidationView()]


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


def build_verifier(settings: Settings) -> TokenVerifier:
    secret = settings.jwt_secret
    if not (secret or settings.jwt_public_key or settings.jwks_file):
        # Zero-configuration default: a secret generated once and kept in PIM_DATA_DIR.
        secret = load_or_create_secret(settings.data_dir)
    return TokenVerifier(
        secret=secret,
        public_key=settings.jwt_public_key,
        jwks_file=settings.jwks_file,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )


def build_services(settings: Settings, *, migrate: bool = True, api: bool = False) -> Services:
    """Connect to PostgreSQL (URL required: embedded servers are started by the caller).
    ``api``: services of an API process, whose writes catch their tenant's views up
    themselves (read-your-writes), so they need not wake the background runners."""
    if settings.database_url is None:
        raise ValueError("database_url must be resolved before building services")
    database_url = settings.database_url
    with migration_lock(database_url) as conn:
        # Constructing the applications creates their event tables.
        catalog = CatalogApplication(env=eventsourcing_env(database_url))
        jobs_app = JobsApplication(env=eventsourcing_env(database_url, max_connections=3))
        store = EventStore(catalog, snapshots_table=SNAPSHOTS_TABLE, notify_runners=not api)
        if migrate:
            backfill_heads(conn, EVENTS_TABLE)
            backfill_heads(conn, JOBS_EVENTS_TABLE)
            run_ddl(
                conn,
                [
                    *SNAPSHOTS_DDL,
                    *POSITIONS_DDL,
                    *Projector.ddl_for(catalog_projections()),
                    *Projector.ddl_for([JobsView()]),
                    *IDEMPOTENCY_DDL,
                    *WEBHOOKS_DDL,
                ],
            )
    projection_pool: ConnectionPool[Any] = ConnectionPool(
        database_url,
        min_size=1,
        max_size=4,
        kwargs=connection_kwargs(),
        open=True,
        name="projections",
        timeout=POOL_TIMEOUT_S,
    )
    projector = TenantProjector(
        projection_pool, store, catalog_projections(), group="catalog", events_table=EVENTS_TABLE
    )
    jobs = EventStore(jobs_app)
    jobs_projector = TenantProjector(
        projection_pool, jobs, [JobsView()], group="jobs", events_table=JOBS_EVENTS_TABLE
    )
    bus = CommandBus(
        store,
        wait_for_position=lambda tenant_id, position: projector.wait_for(
            tenant_id, position, timeout=settings.read_your_writes_timeout_s
        ),
    )
    return Services(
        settings=settings,
        database_url=database_url,
        catalog=catalog,
        store=store,
        projector=projector,
        bus=bus,
        projection_pool=projection_pool,
        verifier=build_verifier(settings),
        jobs_app=jobs_app,
        jobs=jobs,
        jobs_projector=jobs_projector,
        job_queue=JobQueue(settings.redis_url, database_url) if settings.redis_url else None,
    )
