"""import_100k_products_300k_variants_s: the shared catalog's BULK_IMPORT jobs vs. raw
app.save of the same aggregates.
"""

from __future__ import annotations

import asyncio

from bench.baselines import RAW_SAVE_BATCH, _raw_create_saves
from bench.context import Bench
from bench.harness import Metric, Target
from bench.jobs import IMPORT_JOB_PRODUCTS, IMPORT_TARGET_PRODUCTS, IMPORT_VARIANTS


async def bench_import(bench: Bench) -> list[Metric]:
    """Wall time of importing N products with 3 variants each through BULK_IMPORT jobs (first
    submit to last job COMPLETED) vs. eventsourcing's own app.save of 4N Product.Created-sized
    aggregates, 500 a save, on a scratch database."""
    catalog = await bench.bulk_catalog()
    n = catalog.products
    aggregates = n * (1 + IMPORT_VARIANTS)
    raw_s, build_s = await asyncio.to_thread(_raw_create_saves, bench.infra.admin_url, aggregates)
    scale = IMPORT_TARGET_PRODUCTS / n
    target = Target("value", "<=", 60, "s")
    jobs = ", ".join(f"{s:.1f}" for s in catalog.job_seconds)
    notes = [
        *catalog.notes,
        f"{catalog.jobs} BULK_IMPORT jobs of <= {IMPORT_JOB_PRODUCTS} products, "
        f"{catalog.parallel} in flight: {n / catalog.seconds:.0f} products/s, "
        f"{aggregates / catalog.seconds:.0f} products+variants/s; each job's own run "
        f"(started_at -> finished_at): {jobs} s",
        f"raw: {aggregates} Product.Created aggregates, app.save of {RAW_SAVE_BATCH} at a time, "
        f"in {raw_s:.1f} s ({aggregates / raw_s:.0f}/s; building them took {build_s:.1f} s more)",
    ]
    at_target = n == IMPORT_TARGET_PRODUCTS
    extrapolated_note = (
        f"measured at N={n}: equal to import_100k_products_300k_variants_s"
        if at_target
        else f"EXTRAPOLATED, not measured: N={n} value and baseline x {scale:g} (linear; "
        "larger tables and indexes would make the real figure somewhat slower)"
    )
    return [
        Metric(
            "import_100k_products_300k_variants_s",
            catalog.seconds,
            "s",
            raw_s,
            target if at_target else None,
            notes,
        ),
        Metric(
            "import_100k_products_300k_variants_extrapolated_s",
            catalog.seconds * scale,
            "s",
            raw_s * scale,
            target,
            [extrapolated_note],
        ),
    ]
