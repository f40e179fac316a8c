"""stats_p99_ms: tail latency of the catalog counts vs. the bare framework stack."""

from __future__ import annotations

from bench.context import Bench
from bench.harness import CONCURRENCY, Metric, RequestFailed, Target, measure


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
