"""get_by_id: reads by id (throughput, p99) vs. the bare framework stack."""

from __future__ import annotations

import random

from bench.context import Bench
from bench.harness import CONCURRENCY, Metric, Target, measure


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
