"""create_16c: write throughput through the API vs. raw INSERT + COMMIT."""

from __future__ import annotations

import json

from bench.context import Bench
from bench.harness import CONCURRENCY, Metric, Target, measure


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
