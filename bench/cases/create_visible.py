"""create_visible: read-your-writes latency (p50, p99) vs. raw INSERT + COMMIT + SELECT.

PIM_BENCH_VISIBLE_ITERATIONS: products created and searched for (default VISIBLE_ITERATIONS).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
import uuid
from collections import Counter

from bench.baselines import RAW_INSERT, _raw_connection
from bench.context import Bench
from bench.harness import LIST_LIMIT, SEED_PRODUCTS, Metric, RequestFailed, Target, percentile

VISIBLE_ITERATIONS = 300
VISIBLE_MAX_WAIT_S = 2.0


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
