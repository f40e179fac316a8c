"""get_product_with_100_variants: a page of 100 variants vs. the bare framework stack."""

from __future__ import annotations

import json
import secrets

import msgspec

from bench.context import Bench
from bench.harness import CONCURRENCY, Metric, RequestFailed, Target, measure

VARIANT_PAGE = 100  # variants of the product read by get_product_with_100_variants


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
