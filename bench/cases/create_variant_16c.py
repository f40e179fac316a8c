"""create_variant_16c: variant creation through the API vs. raw INSERT + COMMIT."""

from __future__ import annotations

import json
import secrets

from bench.context import Bench
from bench.harness import CONCURRENCY, Metric, Target, measure


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
