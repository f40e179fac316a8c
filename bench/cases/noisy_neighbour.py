"""noisy_neighbour: one tenant's latency alone, and while another tenant imports.

Tenant B, one request at a time, creates a product and lists 100, for PIM_BENCH_SECONDS x 2
(at least 10 s) on a quiet service: the baseline. Then tenant A submits NEIGHBOUR_JOBS
BULK_IMPORT jobs of NEIGHBOUR_PRODUCTS products (3 variants each) at once, and B does the same
again for as long as A's jobs run. B's p99s during A's imports are judged against B's own p99s
alone (target: at most 3x), and nothing may fail. A's import rate is reported beside them
(compare with import_100k_products_300k_variants_s, measured alone).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field

import msgspec

from bench.context import Bench
from bench.harness import LIST_LIMIT, Metric, Target, Tenant, _seconds, percentile
from bench.jobs import BULK_JOB_TIMEOUT_S, _check_job, _import_products, _submit_job, _wait_job

NEIGHBOUR_JOBS = 3
NEIGHBOUR_PRODUCTS = 20_000  # per job; PIM_BENCH_NEIGHBOUR_PRODUCTS overrides
B_SEED = LIST_LIMIT  # B's list is a full page


@dataclass
class Samples:
    creates: list[float] = field(default_factory=list)
    lists: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)


async def _tenant_b(bench: Bench, tenant: Tenant, until: asyncio.Event, seconds: float) -> Samples:
    """B's loop (create, then list 100), until ``until`` is set or ``seconds`` passed."""
    samples = Samples()
    deadline = time.perf_counter() + seconds
    sequence = 0
    while not until.is_set() and time.perf_counter() < deadline:
        sequence += 1
        body = json.dumps({"title": f"neighbour B {sequence}"})
        t0 = time.perf_counter()
        async with bench.session.post(
            bench.url("/products"), data=body, headers=tenant.headers
        ) as resp:
            await resp.read()
            if resp.status == 201:
                samples.creates.append(time.perf_counter() - t0)
            else:
                samples.failures[f"create HTTP {resp.status}"] += 1
        t0 = time.perf_counter()
        async with bench.session.get(
            bench.url("/products"), params={"limit": str(LIST_LIMIT)}, headers=tenant.headers
        ) as resp:
            await resp.read()
            if resp.status == 200:
                samples.lists.append(time.perf_counter() - t0)
            else:
                samples.failures[f"list HTTP {resp.status}"] += 1
    return samples


async def bench_noisy_neighbour(bench: Bench) -> list[Metric]:
    seconds = max(10.0, _seconds() * 2)
    products = int(os.environ.get("PIM_BENCH_NEIGHBOUR_PRODUCTS", "") or NEIGHBOUR_PRODUCTS)
    b = bench.new_tenant()
    await bench.seed(b, B_SEED)
    for _ in range(10):  # warm-up
        await bench.create_product(b, "warm-up")
    alone = await _tenant_b(bench, b, asyncio.Event(), seconds)

    a = bench.new_tenant()
    run = secrets.token_hex(4)
    encoder = msgspec.json.Encoder()
    bodies = [
        encoder.encode(
            {
                "type": "BULK_IMPORT",
                "payload": {"products": _import_products(0, products, f"nn-{run}-{job}")},
            }
        )
        for job in range(NEIGHBOUR_JOBS)
    ]
    done = asyncio.Event()
    started = time.perf_counter()
    job_ids = [await _submit_job(bench, a, "/bulk-jobs", body) for body in bodies]
    during_task = asyncio.create_task(_tenant_b(bench, b, done, BULK_JOB_TIMEOUT_S))
    deadline = started + BULK_JOB_TIMEOUT_S
    try:
        jobs = [await _wait_job(bench, a, job_id, 0.2, deadline) for job_id in job_ids]
    finally:
        done.set()
        during = await during_task
    a_seconds = time.perf_counter() - started
    for job in jobs:
        await _check_job(bench, a, job, products)
    a_rate = NEIGHBOUR_JOBS * products / a_seconds

    errors = [f"B alone: {label} x{n}" for label, n in alone.failures.items()]
    errors += [f"B during A's imports: {label} x{n}" for label, n in during.failures.items()]

    def summary(label: str, samples: Samples, span: float) -> str:
        return (
            f"{label}: {len(samples.creates)} creates in {span:.0f} s, create p50"
            f" {percentile(samples.creates, 50) * 1000:.1f} ms p99"
            f" {percentile(samples.creates, 99) * 1000:.1f} ms; list 100 p50"
            f" {percentile(samples.lists, 50) * 1000:.1f} ms p99"
            f" {percentile(samples.lists, 99) * 1000:.1f} ms"
        )

    notes = [
        summary("B alone", alone, seconds),
        summary("B during A's imports", during, a_seconds),
        f"A: {NEIGHBOUR_JOBS} BULK_IMPORT jobs of {products} products (3 variants each) at once",
    ]
    ratio = Target("ratio", "<=", 3)
    return [
        Metric(
            "noisy_neighbour_create_p99_ms",
            percentile(during.creates, 99) * 1000,
            "ms",
            percentile(alone.creates, 99) * 1000,
            ratio,
            notes,
            errors,
        ),
        Metric(
            "noisy_neighbour_list_p99_ms",
            percentile(during.lists, 99) * 1000,
            "ms",
            percentile(alone.lists, 99) * 1000,
            ratio,
        ),
        Metric(
            "noisy_neighbour_a_import_products_per_s",
            a_rate,
            "products/s",
            0.0,
            notes=["A's import rate while B works (no baseline: compare import_100k_... alone)"],
        ),
    ]
