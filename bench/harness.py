"""The core of the benchmark harness: configuration, results, load generation and tenants.

Every case builds its numbers from these: a ``Metric`` pairs a measured value with the raw
baseline it is judged against, ``measure`` drives a closed-loop load. The per-run context
the cases receive (``Bench``) is in ``bench.context``; the servers in ``bench.servers``.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import aiohttp
import psycopg

from pim.auth.tokens import mint_token

API_PREFIX = "/api/v1/pim"

CONCURRENCY = 16
SEED_PRODUCTS = 200  # products per read tenant: ids for get_by_id, full pages for list_100
LIST_LIMIT = 100
REQUEST_TIMEOUT_S = 10.0
SEED_TIMEOUT_S = 120.0


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


# -- tenants and infrastructure -------------------------------------------------------------


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
