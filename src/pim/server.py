"""Running the service: the whole thing in one process (``pim serve``) or its parts."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn

from pim.api.app import create_app
from pim.bootstrap import build_services
from pim.infra.embedded import embedded_services
from pim.settings import Settings
from pim.worker import start_worker

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


class ChildProcess:
    """A ``pim`` subcommand run as a child of this process, restarted if it dies.

    ``pim serve`` runs its job worker this way: a bulk job is Python-bound, and in its own
    process it runs on the other core while this one serves the API and projects the job's
    events, so writing and projecting overlap instead of taking turns on one interpreter lock
    (measured: import 57 -> 41 s for 100k products; see docs/decisions/0012)."""

    RESTART_DELAY_S = 1.0
    STOP_TIMEOUT_S = 30.0

    def __init__(self, resolved: Settings, *command: str) -> None:
        self.command = command
        self.env = {
            **os.environ,
            # The child uses the servers this process resolved (embedded ones included).
            "PIM_DATABASE_URL": resolved.database_url or "",
            "PIM_REDIS_URL": resolved.redis_url or "",
            "PIM_DATA_DIR": str(resolved.data_dir),
            # The child leaves when this process is gone, even if it was killed outright.
            PARENT_PID_ENV: str(os.getpid()),
        }
        self._stop = threading.Event()
        self._child: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._supervise, name=f"child-{'-'.join(command)}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def _spawn(self) -> subprocess.Popen[bytes] | None:
        with self._lock:
            if self._stop.is_set():
                return None
            # Its own session: a terminal's Ctrl-C reaches only this process, which then
            # stops the child in order (instead of racing the supervisor's restart).
            self._child = subprocess.Popen(  # noqa: S603 - this interpreter, our subcommands
                [sys.executable, "-m", "pim", *self.command], env=self.env, start_new_session=True
            )
            return self._child

    def _supervise(self) -> None:
        name = " ".join(self.command)
        while not self._stop.is_set():
            try:
                child = self._spawn()
            except OSError:
                log.exception("could not start pim %s; retrying", name)
                self._stop.wait(self.RESTART_DELAY_S)
                continue
            if child is None:
                return
            code = child.wait()
            if not self._stop.is_set():
                log.error("pim %s exited with %s; restarting", name, code)
                self._stop.wait(self.RESTART_DELAY_S)

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
            child = self._child
        if child is None or child.poll() is not None:
            return
        child.terminate()
        try:
            child.wait(timeout=self.STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def serve(settings: Settings, *, whole_service: bool = True) -> None:
    """The HTTP API on PIM_HOST:PIM_PORT; with ``whole_service`` also the projection runners
    and a job worker (a child process). Embedded PostgreSQL/Redis when no URLs are
    configured."""
    with embedded_services(settings) as resolved:
        services = build_services(resolved)
        worker: ChildProcess | None = None
        try:
            if whole_service:
                services.projector.start_background(services.database_url)
                services.jobs_projector.start_background(services.database_url)
                worker = ChildProcess(resolved, "worker")
                worker.start()
            server = _Server(_uvicorn_config(create_app(services), resolved))
            server.run()
        finally:
            if worker is not None:
                worker.stop()
            services.close()


PARENT_PID_ENV = "PIM_PARENT_PID"
PARENT_CHECK_S = 1.0


def _stop_on_signal_or_parent_exit(on_stop: Callable[[], None]) -> None:
    """Call ``on_stop`` on SIGTERM/SIGINT, or once the process that started us
    (PIM_PARENT_PID, set by ``pim serve`` for its children) is gone."""
    signal.signal(signal.SIGTERM, lambda *_: on_stop())
    signal.signal(signal.SIGINT, lambda *_: on_stop())
    parent = int(os.environ.get(PARENT_PID_ENV) or 0)
    if not parent:
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        log.warning("parent process %s is gone; stopping", parent)
        on_stop()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run_worker(settings: Settings, *, threads: int = 4) -> None:
    """Job and webhook actors, the job dispatcher and sweeper, until SIGINT/SIGTERM (or,
    as the child of ``pim serve``, until that process is gone)."""
    with embedded_services(settings) as resolved:
        services = build_services(resolved)
        stop = threading.Event()
        _stop_on_signal_or_parent_exit(stop.set)
        services.jobs_projector.start_background(services.database_url)
        worker = start_worker(services, threads=threads)
        try:
            stop.wait()
        finally:
            worker.stop()
            services.close()


def serve_workers(settings: Settings, workers: int, *, whole_service: bool = False) -> None:
    """The API in several processes (uvicorn workers); the parent owns embedded servers.
    With ``whole_service`` the parent also runs the projection runner and a job worker as
    child processes (``pim serve --workers N`` is the whole service, like ``pim serve``)."""
    with embedded_services(settings) as resolved:
        # Migrate once in the parent, then hand resolved URLs to the workers.
        build_services(resolved).close()
        os.environ["PIM_DATABASE_URL"] = resolved.database_url or ""
        os.environ["PIM_REDIS_URL"] = resolved.redis_url or ""
        children = (
            [ChildProcess(resolved, "projections", "run"), ChildProcess(resolved, "worker")]
            if whole_service
            else []
        )
        for child in children:
            child.start()
        try:
            uvicorn.run(
                "pim.server:asgi_from_env",
                factory=True,
                workers=workers,
                host=resolved.host,
                port=resolved.port,
                log_level="warning",
                access_log=False,
            )
        finally:
            for child in children:
                child.stop()


def asgi_from_env() -> Any:
    """uvicorn factory for worker processes."""
    services = build_services(Settings.from_env(), migrate=False)
    return create_app(services)


def run_projections(settings: Settings) -> None:
    """The projection runner alone, until SIGINT/SIGTERM (or, as the child of ``pim serve``,
    until that process is gone)."""
    with embedded_services(settings) as resolved:
        services = build_services(resolved)
        _stop_on_signal_or_parent_exit(services.projector.stop)
        try:
            services.projector.run_forever(services.database_url)
        finally:
            services.close()
