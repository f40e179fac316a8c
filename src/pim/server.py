"""Running the service: the whole thing in one process (``pim serve``) or its parts."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
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
from pim.api.transport import BoundedHttpToolsProtocol
from pim.bootstrap import build_services
from pim.infra.database import UNAVAILABLE_ERRORS, log_failure
from pim.infra.deadline import StopDeadline
from pim.infra.embedded import EmbeddedServices, embedded_services
from pim.services import Services
from pim.settings import Settings
from pim.worker import start_job_process, start_main

log = logging.getLogger(__name__)


# Stopping (SIGTERM/SIGINT) within 15 s in every state, outages included: the API finishes
# the requests in hand within API_GRACE_S while the background children stop side by side;
# a child exits by CHILD_STOP_S whatever it waits for; ``pim serve`` by SERVE_STOP_S, killing
# what is left (children, owned embedded servers) first.
API_GRACE_S = 4
CHILD_STOP_S = 7.0
SERVE_STOP_S = 14.0


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGINT/SIGTERM after a graceful shutdown, which would kill the process
    before our cleanup (closing pools, stopping embedded PostgreSQL and Redis) runs. Here the
    signal only asks the server to exit (and calls ``on_stop``); the caller's ``finally``
    blocks then run."""

    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_stop = on_stop

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.on_stop()
        super().handle_exit(sig, frame)

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started:
            host = "127.0.0.1" if self.config.host in ("0.0.0.0", "::") else self.config.host  # noqa: S104
            url = f"http://{host}:{self.config.port}"
            log.info("API on %s, reference at %s/schema", url, url)

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
        http=BoundedHttpToolsProtocol,
        timeout_graceful_shutdown=API_GRACE_S,
        **extra,
    )
    if settings.log_level != "debug":
        # One line says where the API is (see _Server.startup); uvicorn's own start-up
        # lines are debug detail. Its warnings and errors still show.
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    if settings.access_log:
        # Requests are logged whatever the level of other logs (paths only: no headers).
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    return config


class ChildProcess:
    """A ``pim`` subcommand run as a child of this process, restarted if it dies.

    ``pim serve`` runs its background work this way, the projection runner and the job
    worker: a bulk job and its projection are Python-bound, and in processes of their own they
    run on the other core instead of taking turns on the API's interpreter lock (measured:
    import 57 -> 41 s for 100k products, decision 0012), at a lower CPU priority (``nice``),
    so a neighbour's import never slows the API's answers (decision 0018)."""

    RESTART_DELAY_S = 1.0
    STOP_TIMEOUT_S = CHILD_STOP_S + 1  # a child exits by CHILD_STOP_S on its own

    def __init__(self, resolved: Settings, *command: str, nice: int = 0) -> None:
        self.command = command
        self.env = {
            **os.environ,
            # The child uses the servers this process resolved (embedded ones included).
            "PIM_DATABASE_URL": resolved.database_url or "",
            "PIM_REDIS_URL": resolved.redis_url or "",
            "PIM_DATA_DIR": str(resolved.data_dir),
            # The child leaves when this process is gone, even if it was killed outright.
            PARENT_PID_ENV: str(os.getpid()),
            NICE_ENV: str(nice),
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

    def terminate(self) -> subprocess.Popen[bytes] | None:
        """Stop supervising and ask the child to stop (SIGTERM); the child, if it runs."""
        with self._lock:
            self._stop.set()
            child = self._child
        if child is None or child.poll() is not None:
            return None
        child.terminate()
        return child

    def kill(self) -> None:
        with self._lock:
            self._stop.set()
            child = self._child
        if child is not None and child.poll() is None:
            child.kill()

    @classmethod
    def stop_all(cls, children: list[ChildProcess]) -> None:
        """Stop children side by side: SIGTERM to all, then SIGKILL what has not exited."""
        running = [c for c in (child.terminate() for child in children) if c is not None]
        deadline = time.monotonic() + cls.STOP_TIMEOUT_S
        for child in running:
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    @classmethod
    def kill_all(cls, children: list[ChildProcess]) -> None:
        for child in children:
            child.kill()

    @classmethod
    def terminate_all(cls, children: list[ChildProcess]) -> None:
        """Ask every child to stop now (SIGTERM), without waiting."""
        for child in children:
            child.terminate()


def background_children(resolved: Settings) -> list[ChildProcess]:
    """The background half of ``pim serve``: the projection runner and the job worker."""
    nice = resolved.background_nice
    return [
        ChildProcess(resolved, "projections", "run", nice=nice),
        ChildProcess(resolved, "worker", nice=nice),
    ]


def serve(settings: Settings, *, whole_service: bool = True) -> None:
    """The HTTP API on PIM_HOST:PIM_PORT; with ``whole_service`` also the projection runner
    and the job worker (child processes). Embedded PostgreSQL/Redis when no URLs are
    configured, supervised: restarted if they die."""
    deadline = StopDeadline(SERVE_STOP_S)
    with _stop_signals_raise(deadline), EmbeddedServices(settings, supervise=True) as embedded:
        resolved = embedded.settings
        children = background_children(resolved) if whole_service else []
        deadline.on_expiry(lambda: ChildProcess.kill_all(children))
        deadline.on_expiry(embedded.kill)

        def on_stop() -> None:
            deadline.arm()
            ChildProcess.terminate_all(children)  # they stop while the API drains

        services = build_services(resolved, api=True)
        try:
            for child in children:
                child.start()
            server = _Server(_uvicorn_config(create_app(services), resolved), on_stop)
            server.run()
        finally:
            deadline.arm()
            ChildProcess.stop_all(children)
            services.close()


@contextlib.contextmanager
def _stop_signals_raise(deadline: StopDeadline) -> Iterator[None]:
    """Outside uvicorn's own handling (starting, stopping), the first SIGTERM/SIGINT unwinds
    the process in order (SystemExit through the ``finally`` blocks) and starts the stop
    deadline; later ones only let the deadline run (cleanup is not interrupted)."""

    def handle(signum: int, frame: Any) -> None:
        first = not deadline.requested.is_set()
        deadline.arm()
        if first:
            raise SystemExit(0)

    handled = (signal.SIGINT, signal.SIGTERM)
    original = {sig: signal.signal(sig, handle) for sig in handled}
    try:
        yield
    finally:
        for sig, handler in original.items():
            signal.signal(sig, handler)


PARENT_PID_ENV = "PIM_PARENT_PID"
PR_SET_PDEATHSIG = 1
NICE_ENV = "PIM_NICE"
PARENT_CHECK_S = 1.0


def _stop_on_signal_or_parent_exit(on_stop: Callable[[], None]) -> None:
    """Call ``on_stop`` on SIGTERM/SIGINT, or once the process that started us
    (PIM_PARENT_PID, set by ``pim serve`` for its children) is gone; either way the process
    exits within CHILD_STOP_S, even if what it waits for never answers."""
    deadline = StopDeadline(CHILD_STOP_S)

    def stop() -> None:
        deadline.arm()
        on_stop()

    signal.signal(signal.SIGTERM, lambda *_: stop())
    signal.signal(signal.SIGINT, lambda *_: stop())
    parent = int(os.environ.get(PARENT_PID_ENV) or 0)
    if not parent:
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        log.warning("parent process %s is gone; stopping", parent)
        stop()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _build_when_reachable(
    resolved: Settings, stop: threading.Event, **options: bool
) -> Services | None:
    """Services for a background process, waiting for PostgreSQL if it is down (an outage,
    a restart) instead of dying and being restarted; None if asked to stop meanwhile."""
    while not stop.is_set():
        try:
            return build_services(resolved, **options)
        except UNAVAILABLE_ERRORS as exc:
            log_failure(log, "starting; retrying in 1s", exc)
            stop.wait(1.0)
    return None


def run_worker(settings: Settings, *, threads: int = 4, processes: int | None = None) -> None:
    """The job dispatcher, the sweeper and webhook deliveries (``threads`` at once) in this
    process, and ``processes`` job processes (children, supervised), until SIGINT/SIGTERM
    (or, as the child of ``pim serve``, until that process is gone)."""
    with embedded_services(settings) as resolved:
        stop = threading.Event()
        _stop_on_signal_or_parent_exit(stop.set)
        services = _build_when_reachable(resolved, stop)
        if services is None:
            return
        services.jobs_projector.start_background(services.database_url)
        worker = start_main(services, threads=threads)
        count = resolved.job_processes if processes is None else processes
        log.info("worker started: %d job processes, dispatcher, sweeper, webhooks", count)
        jobs = [ChildProcess(resolved, "worker", "--job-process") for _ in range(count)]
        try:
            for child in jobs:
                child.start()
            stop.wait()
        finally:
            ChildProcess.stop_all(jobs)
            worker.stop()
            services.close()


def run_job_process(settings: Settings) -> None:
    """One job process of ``pim worker``: a job at a time, until SIGINT/SIGTERM. It dies
    with its parent, even one killed outright (a job is resumable, never half-applied)."""
    _die_with_parent()
    with embedded_services(settings) as resolved:
        stop = threading.Event()
        _stop_on_signal_or_parent_exit(stop.set)
        services = _build_when_reachable(resolved, stop, migrate=False)
        if services is None:
            return
        worker = start_job_process(services)
        try:
            stop.wait()
        finally:
            worker.stop()
            services.close()


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (PR_SET_PDEATHSIG); elsewhere
    the parent watch of ``_stop_on_signal_or_parent_exit`` stops it within a second."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    parent = int(os.environ.get(PARENT_PID_ENV) or 0)
    if parent and os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)


def serve_workers(settings: Settings, workers: int, *, whole_service: bool = False) -> None:
    """The API in several processes (uvicorn workers); the parent owns embedded servers.
    With ``whole_service`` the parent also runs the projection runner and a job worker as
    child processes (``pim serve --workers N`` is the whole service, like ``pim serve``)."""
    with embedded_services(settings, supervise=True) as resolved:
        # Migrate once in the parent, then hand resolved URLs to the workers.
        build_services(resolved).close()
        os.environ["PIM_DATABASE_URL"] = resolved.database_url or ""
        os.environ["PIM_REDIS_URL"] = resolved.redis_url or ""
        children = background_children(resolved) if whole_service else []
        for child in children:
            child.start()
        url = f"http://{resolved.host}:{resolved.port}"
        log.info("API on %s (%d processes), reference at %s/schema", url, workers, url)
        try:
            uvicorn.run(
                "pim.server:asgi_from_env",
                factory=True,
                workers=workers,
                host=resolved.host,
                port=resolved.port,
                log_level="warning",
                access_log=False,
                http=BoundedHttpToolsProtocol,
                timeout_graceful_shutdown=API_GRACE_S,
            )
        finally:
            ChildProcess.stop_all(children)


def asgi_from_env() -> Any:
    """uvicorn factory for worker processes."""
    services = build_services(Settings.from_env(), migrate=False, api=True)
    return create_app(services)


def run_projections(settings: Settings) -> None:
    """The projection runner alone, until SIGINT/SIGTERM (or, as the child of ``pim serve``,
    until that process is gone)."""
    with embedded_services(settings) as resolved:
        stop = threading.Event()
        running: list[Services] = []

        def on_stop() -> None:
            stop.set()
            for services in running:
                services.projector.stop()

        _stop_on_signal_or_parent_exit(on_stop)
        services = _build_when_reachable(resolved, stop)
        if services is None:
            return
        running.append(services)
        log.info("projection runner started")
        try:
            if not stop.is_set():
                services.projector.run_forever(services.database_url)
        finally:
            services.close()
