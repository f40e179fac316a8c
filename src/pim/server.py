"""Running the service: the whole thing in one process (``pim serve``) or its parts."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn

from pim.api.app import create_app
from pim.bootstrap import build_services
from pim.infra.embedded import embedded_services
from pim.settings import Settings
from pim.worker import WorkerHandle, start_worker

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGINT/SIGTERM after a graceful shutdown, which would kill the process
    before our cleanup (closing pools, stopping embedded PostgreSQL and Redis) runs. Here the
    signal only asks the server to exit; the caller's ``finally`` blocks then run."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def _uvicorn_config(app: Any, settings: Settings, **extra: Any) -> uvicorn.Config:
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        lifespan="on",
        **extra,
    )
    if settings.access_log:
        # Requests are logged whatever the level of other logs (paths only: no headers).
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    return config


def serve(settings: Settings, *, whole_service: bool = True) -> None:
    """The HTTP API on PIM_HOST:PIM_PORT; with ``whole_service`` also the projection runners
    and a job worker. Embedded PostgreSQL/Redis when no URLs are configured."""
    with embedded_services(settings) as resolved:
        services = build_services(resolved)
        worker: WorkerHandle | None = None
        try:
            if whole_service:
                services.projector.start_background(services.database_url)
                services.jobs_projector.start_background(services.database_url)
                worker = start_worker(services)
            server = _Server(_uvicorn_config(create_app(services), resolved))
            server.run()
        finally:
            if worker is not None:
                worker.stop()
            services.close()


def run_worker(settings: Settings, *, threads: int = 4) -> None:
    """Job and webhook actors, the job dispatcher and sweeper, until SIGINT/SIGTERM."""
    with embedded_services(settings) as resolved:
        services = build_services(resolved)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        services.jobs_projector.start_background(services.database_url)
        worker = start_worker(services, threads=threads)
        try:
            stop.wait()
        finally:
            worker.stop()
            services.close()


def serve_workers(settings: Settings, workers: int) -> None:
    """The API in several processes (uvicorn workers); the parent owns embedded servers."""
    with embedded_services(settings) as resolved:
        # Migrate once in the parent, then hand resolved URLs to the workers.
        build_services(resolved).close()
        os.environ["PIM_DATABASE_URL"] = resolved.database_url or ""
        os.environ["PIM_REDIS_URL"] = resolved.redis_url or ""
        uvicorn.run(
            "pim.server:asgi_from_env",
            factory=True,
            workers=workers,
            host=resolved.host,
            port=resolved.port,
            log_level="warning",
            access_log=False,
        )


def asgi_from_env() -> Any:
    """uvicorn factory for worker processes."""
    services = build_services(Settings.from_env(), migrate=False)
    return create_app(services)


def run_projections(settings: Settings) -> None:
    """The projection runner alone, until SIGINT/SIGTERM."""
    with embedded_services(settings) as resolved:
        services = build_services(resolved)
        stop = threading.Event()

        def on_signal(*_: object) -> None:
            services.projector.stop()
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        try:
            services.projector.run_forever(services.database_url)
        finally:
            services.close()
