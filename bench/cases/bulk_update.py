"""bulk_update_items_per_s and bulk_update_with_prices_items_per_s: BULK_UPDATE jobs over
the shared catalog vs. raw app.save of the events they write.
"""

from __future__ import annotations

import asyncio
import json
import time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from bench.baselines import RAW_SAVE_BATCH, _raw_price_update_saves, _raw_update_saves
from bench.context import Bench
from bench.harness import Metric, RequestFailed, Target, Tenant
from bench.jobs import (
    BULK_JOB_TIMEOUT_S,
    IMPORT_VARIANTS,
    JOB_POLL_S,
    _check_job,
    _job_seconds,
    _submit_job,
    _wait_job,
)


async def _first_product_and_variant(bench: Bench, tenant: Tenant) -> tuple[str, str]:
    """(status, first variant's price) of the tenant's first product."""
    async with bench.session.get(bench.url("/products?limit=1"), headers=tenant.headers) as resp:
        if resp.status != 200:
            raise RequestFailed(resp.status, await resp.text(errors="replace"))
        product = (await resp.json())[0]
    async with bench.session.get(
        bench.url(f"/products/{product['id']}/variants?limit=1"), headers=tenant.headers
    ) as resp:
        if resp.status != 200:
            raise RequestFailed(resp.status, await resp.text(errors="replace"))
        variant = (await resp.json())[0]
    return str(product["status"]), str(variant["price"])


async def _timed_bulk_update(
    bench: Bench, tenant: Tenant, n: int, payload: dict[str, Any]
) -> tuple[float, dict[str, Any]]:
    """Run one BULK_UPDATE over the tenant's whole catalog: (seconds from POST to
    COMPLETED, the job)."""
    body = json.dumps({"type": "BULK_UPDATE", "payload": {"filter": {}, **payload}}).encode()
    t0 = time.perf_counter()
    job_id = await _submit_job(bench, tenant, "/bulk-jobs", body)
    job = await _wait_job(bench, tenant, job_id, JOB_POLL_S, t0 + BULK_JOB_TIMEOUT_S)
    elapsed = time.perf_counter() - t0
    await _check_job(bench, tenant, job, n)
    return elapsed, job


async def _raw_update_baseline(bench: Bench, n: int) -> tuple[float, str]:
    raw_s, load_s, setup_s = await asyncio.to_thread(_raw_update_saves, bench.infra.admin_url, n)
    return raw_s, (
        f"raw: {n} Product.Updated events, app.save of {RAW_SAVE_BATCH} at a time, in "
        f"{raw_s:.2f} s (loading them with repository.get took {load_s:.1f} s more; creating "
        f"them first {setup_s:.1f} s)"
    )


def _bulk_update_metric(
    name: str, n: int, elapsed: float, raw_s: float, notes: list[str], errors: list[str]
) -> Metric:
    """Items (products) per second, against the raw app.save rate of the same events."""
    target = Target("value", ">=", 10_000, "items/s")
    return Metric(name, n / elapsed, "items/s", n / raw_s, target, notes, errors)


async def bench_bulk_update(bench: Bench) -> list[Metric]:
    """One BULK_UPDATE of a product field (status) over the whole imported catalog, items
    (products) per second from POST to COMPLETED, vs. eventsourcing's own app.save of the
    same events (N Product.Updated), 500 a save: the like-for-like reading of the issue's
    baseline (docs/decisions/0016-what-bulk-update-benchmarks-measure.md)."""
    catalog = await bench.bulk_catalog()
    n, tenant = catalog.products, catalog.tenant
    status_before, _ = await _first_product_and_variant(bench, tenant)
    status = "ARCHIVED" if status_before != "ARCHIVED" else "ACTIVE"
    elapsed, job = await _timed_bulk_update(bench, tenant, n, {"set": {"status": status}})
    status_after, _ = await _first_product_and_variant(bench, tenant)
    errors = (
        []
        if status_after == status
        else [f"first product's status after the update: {status_after!r}, not {status!r}"]
    )
    raw_s, raw_note = await _raw_update_baseline(bench, n)
    notes = [
        f"N={n} products, set status {status!r}, one job: {elapsed:.1f} s from POST to "
        f"COMPLETED, the job's own run {_job_seconds(job):.1f} s; 1 aggregate per item",
        raw_note,
    ]
    return [_bulk_update_metric("bulk_update_items_per_s", n, elapsed, raw_s, notes, errors)]


async def bench_bulk_update_with_prices(bench: Bench) -> list[Metric]:
    """One BULK_UPDATE of status + price x 1.10 on every variant over the whole imported
    catalog, items (products) per second from POST to COMPLETED, vs. eventsourcing's own
    app.save of the same events (N Product.Updated + 3N Variant.Updated), 500 products and
    their variants a save."""
    catalog = await bench.bulk_catalog()
    n, tenant = catalog.products, catalog.tenant
    status_before, price_before = await _first_product_and_variant(bench, tenant)
    status = "DRAFT" if status_before != "DRAFT" else "ACTIVE"
    elapsed, job = await _timed_bulk_update(
        bench,
        tenant,
        n,
        {"set": {"status": status}, "price": {"op": "multiply", "value": "1.10"}},
    )
    status_after, price_after = await _first_product_and_variant(bench, tenant)
    errors: list[str] = []
    expected_price = str(
        (Decimal(price_before) * Decimal("1.10")).quantize(Decimal("0.01"), ROUND_HALF_UP)
    )
    if status_after != status or price_after != expected_price:
        errors.append(
            f"first product after the update: status {status_after!r} (was {status_before!r}), "
            f"variant price {price_after!r} (was {price_before!r}, expected {expected_price!r})"
        )
    raw_s = await asyncio.to_thread(_raw_price_update_saves, bench.infra.admin_url, n)
    events = n * (1 + IMPORT_VARIANTS)
    notes = [
        f"N={n} products ({n * IMPORT_VARIANTS} variant prices), one job: {elapsed:.1f} s from "
        f"POST to COMPLETED, the job's own run {_job_seconds(job):.1f} s; 4 aggregates per "
        "item (the product and its 3 variants)",
        f"raw: the same {events} update events (N Product.Updated + {IMPORT_VARIANTS}N "
        f"Variant.Updated), app.save of {RAW_SAVE_BATCH} products and their variants at a time, "
        f"in {raw_s:.2f} s ({n / raw_s:.0f} items/s, {events / raw_s:.0f} events/s): below "
        "10,000 items/s already without loading, rules or projection, hence the proposed "
        "one event per product (docs/decisions/0014-proposed-one-event-per-product-for-bulk-"
        "prices.md)",
    ]
    return [
        _bulk_update_metric("bulk_update_with_prices_items_per_s", n, elapsed, raw_s, notes, errors)
    ]
