"""list_100: full pages of 100 products vs. the bare framework stack."""

from __future__ import annotations

from bench.context import Bench
from bench.harness import CONCURRENCY, LIST_LIMIT, Metric, Target, measure


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
