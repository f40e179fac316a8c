"""Wiring: builds every service from one Settings object. Nothing here runs at import time."""

from __future__ import annotations

import logging
from typing import Any

from psycopg_pool import ConnectionPool

from pim.auth.tokens import TokenVerifier, load_or_create_secret
from pim.commands.bus import CommandBus
from pim.eventstore import (
    EVENTS_TABLE,
    JOBS_EVENTS_TABLE,
    CatalogApplication,
    EventStore,
    JobsApplication,
)
from pim.eventstore.recorders import backfill_heads
from pim.infra.database import (
    POOL_TIMEOUT_S,
    connection_kwargs,
    eventsourcing_env,
    migration_lock,
    run_ddl,
)
from pim.infra.schema import SERVICE_TABLES_DDL, SNAPSHOTS_TABLE
from pim.jobs.broker import JobQueue
from pim.jobs.view import JobsView
from pim.projections.catalog import catalog_projections
from pim.projections.runner import Projector
from pim.projections.tenants import TenantProjector
from pim.services import Services
from pim.settings import Settings

log = logging.getLogger(__name__)


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
                    *SERVICE_TABLES_DDL,
                    *Projector.ddl_for(catalog_projections()),
                    *Projector.ddl_for([JobsView()]),
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
        jobs=jobs,
        wait_for_job=lambda tenant_id, position: jobs_projector.wait_for(
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
