"""Bulk jobs: submitting and waiting for them, and the catalog the bulk cases share.

The bulk benchmarks (import, bulk update, export) share one catalog, imported through
BULK_IMPORT jobs by ``_import_catalog`` the first time a case asks ``Bench.bulk_catalog``; its
size N (PIM_BENCH_IMPORT_PRODUCTS, or a probe job's verdict) and PIM_BENCH_IMPORT_PARALLEL are
described in ``bench/run.py`` with the other environment variables.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import aiohttp
import msgspec

from bench.harness import RequestFailed, Tenant, run_all

if TYPE_CHECKING:
    from bench.context import Bench


IMPORT_TARGET_PRODUCTS = 100_000  # the catalog size the import metric is named after
IMPORT_VARIANTS = 3  # per imported product
IMPORT_JOB_PRODUCTS = 10_000  # per BULK_IMPORT job: ~2.5 MB, well under the 10 MiB body limit
IMPORT_PARALLEL_JOBS = 2  # import jobs in flight at once (the worker runs up to 4)
IMPORT_PROBE_PRODUCTS = 1_000  # a first, separate job that measures the rate to choose N
IMPORT_BUDGET_S = 360.0  # above this estimate for the target size, import a smaller catalog
IMPORT_SMALL_PRODUCTS = 10_000  # ... of this many products
MAX_BODY_BYTES = 10 * 1024 * 1024
JOB_POLL_S = 0.1
BULK_JOB_TIMEOUT_S = 1800.0
BULK_REQUEST_TIMEOUT_S = 300.0  # a POST of 10,000 products; a CSV download
STATS_SETTLE_S = 30.0


@dataclass
class BulkCatalog:
    """The tenant the bulk benchmarks work on: N products with IMPORT_VARIANTS variants each,
    imported through BULK_IMPORT jobs."""

    tenant: Tenant
    products: int  # N
    seconds: float  # first submit -> last job COMPLETED
    jobs: int
    parallel: int
    job_seconds: list[float]  # each job's own started_at -> finished_at
    notes: list[str]


def _bulk_timeout() -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=BULK_REQUEST_TIMEOUT_S)


async def _submit_job(bench: Bench, tenant: Tenant, path: str, body: bytes) -> str:
    """POST a job (bulk job or export) and return its id; RequestFailed unless 202."""
    async with bench.session.post(
        bench.url(path), data=body, headers=tenant.headers, timeout=_bulk_timeout()
    ) as resp:
        text = await resp.text(errors="replace")
        if resp.status != 202:
            raise RequestFailed(resp.status, text)
    return str(json.loads(text)["id"])


async def _get_job(bench: Bench, tenant: Tenant, job_id: str) -> dict[str, Any]:
    async with bench.session.get(bench.url(f"/bulk-jobs/{job_id}"), headers=tenant.headers) as resp:
        if resp.status != 200:
            raise RequestFailed(resp.status, await resp.text(errors="replace"))
        job: dict[str, Any] = await resp.json()
        return job


async def _wait_job(
    bench: Bench, tenant: Tenant, job_id: str, poll: float, deadline: float
) -> dict[str, Any]:
    """Poll until the job is COMPLETED or FAILED (RuntimeError past ``deadline``)."""
    while True:
        job = await _get_job(bench, tenant, job_id)
        if job["status"] in ("COMPLETED", "FAILED"):
            return job
        if time.perf_counter() > deadline:
            raise RuntimeError(
                f"{job['type']} job {job_id} still {job['status']} "
                f"({job['processed_items']}/{job['total_items']} items) at the time limit"
            )
        await asyncio.sleep(poll)


async def _check_job(bench: Bench, tenant: Tenant, job: dict[str, Any], expected: int) -> None:
    """A job must have COMPLETED with every one of ``expected`` items succeeded; otherwise
    RuntimeError with the job's error or its first failed item."""
    if (
        job["status"] == "COMPLETED"
        and not job["failed_items"]
        and job["succeeded_items"] == expected
    ):
        return
    first_failure = ""
    if job["status"] == "COMPLETED" and job["failed_items"] and job["type"] != "EXPORT":
        async with bench.session.get(
            bench.url(f"/bulk-jobs/{job['id']}/result"),
            headers=tenant.headers,
            timeout=_bulk_timeout(),
        ) as resp:
            async for line in resp.content:
                if b'"FAILED"' in line:
                    first_failure = f"; first failed item: {line.decode(errors='replace')[:300]}"
                    break
    raise RuntimeError(
        f"{job['type']} job {job['id']} {job['status']}: {job['succeeded_items']} succeeded, "
        f"{job['failed_items']} failed of {expected} expected; error {job.get('error')!r}"
        f"{first_failure}"
    )


def _job_seconds(job: dict[str, Any]) -> float:
    """The job's own run time (started_at -> finished_at), as the service recorded it."""
    if not job.get("started_at") or not job.get("finished_at"):
        return math.nan
    started = datetime.fromisoformat(str(job["started_at"]).replace("Z", "+00:00"))
    finished = datetime.fromisoformat(str(job["finished_at"]).replace("Z", "+00:00"))
    return (finished - started).total_seconds()


def _import_products(start: int, count: int, run: str) -> list[dict[str, Any]]:
    return [
        {
            "title": f"bulk product {i:06d}",
            "variants": [
                {"sku": f"bk-{run}-{i:06d}-{k}", "price": "10.00", "currency": "USD"}
                for k in range(IMPORT_VARIANTS)
            ],
        }
        for i in range(start, start + count)
    ]


async def _run_imports(
    bench: Bench, tenant: Tenant, products: int, parallel: int, run: str
) -> tuple[float, list[float]]:
    """Import ``products`` products into ``tenant`` as jobs of at most IMPORT_JOB_PRODUCTS,
    ``parallel`` in flight; (seconds from the first submit to the last job COMPLETED, each
    job's own run time). The bodies are encoded before the clock starts."""
    encoder = msgspec.json.Encoder()
    chunks: list[tuple[int, bytes]] = []
    for start in range(0, products, IMPORT_JOB_PRODUCTS):
        count = min(IMPORT_JOB_PRODUCTS, products - start)
        body = encoder.encode(
            {"type": "BULK_IMPORT", "payload": {"products": _import_products(start, count, run)}}
        )
        if len(body) > MAX_BODY_BYTES:
            raise RuntimeError(f"an import body of {len(body)} bytes exceeds the 10 MiB limit")
        chunks.append((count, body))
    pending = iter(chunks)
    job_seconds: list[float] = []
    t0 = time.perf_counter()
    deadline = t0 + BULK_JOB_TIMEOUT_S

    async def lane() -> None:
        for count, body in pending:
            job_id = await _submit_job(bench, tenant, "/bulk-jobs", body)
            job = await _wait_job(bench, tenant, job_id, JOB_POLL_S, deadline)
            await _check_job(bench, tenant, job, count)
            job_seconds.append(_job_seconds(job))

    await run_all(lane() for _ in range(max(1, min(parallel, len(chunks)))))
    return time.perf_counter() - t0, job_seconds


async def _settled_stats(bench: Bench, tenant: Tenant, products: int) -> None:
    """The tenant's counts must reach N products and N x IMPORT_VARIANTS variants."""
    want = (products, products * IMPORT_VARIANTS)
    deadline = time.perf_counter() + STATS_SETTLE_S
    while True:
        async with bench.session.get(bench.url("/stats"), headers=tenant.headers) as resp:
            if resp.status != 200:
                raise RequestFailed(resp.status, await resp.text(errors="replace"))
            stats = await resp.json()
        got = (stats.get("total_products"), stats.get("total_variants"))
        if got == want:
            return
        if time.perf_counter() > deadline:
            raise RuntimeError(f"after the import /stats counts {got}, expected {want}")
        await asyncio.sleep(0.2)


async def _import_catalog(bench: Bench) -> BulkCatalog:
    """Choose N (PIM_BENCH_IMPORT_PRODUCTS, or IMPORT_TARGET_PRODUCTS unless a probe job says
    that would take longer than IMPORT_BUDGET_S), then import it into a new tenant."""
    configured = os.environ.get("PIM_BENCH_IMPORT_PRODUCTS", "")
    parallel = int(os.environ.get("PIM_BENCH_IMPORT_PARALLEL", "") or IMPORT_PARALLEL_JOBS)
    run = secrets.token_hex(4)
    notes: list[str] = []
    if configured:
        products = int(configured)
        notes.append(f"N={products} products (PIM_BENCH_IMPORT_PRODUCTS)")
    else:
        probe_s, _ = await _run_imports(
            bench, bench.new_tenant(), IMPORT_PROBE_PRODUCTS, 1, f"probe-{run}"
        )
        estimate = probe_s * IMPORT_TARGET_PRODUCTS / IMPORT_PROBE_PRODUCTS
        probe = (
            f"a probe job of {IMPORT_PROBE_PRODUCTS} products (another tenant) took "
            f"{probe_s:.1f} s: ~{estimate:.0f} s estimated for {IMPORT_TARGET_PRODUCTS}"
        )
        if estimate > IMPORT_BUDGET_S:
            products = IMPORT_SMALL_PRODUCTS
            notes.append(
                f"N={products} products, NOT {IMPORT_TARGET_PRODUCTS}: {probe} "
                f"(> {IMPORT_BUDGET_S:.0f} s budget)"
            )
        else:
            products = IMPORT_TARGET_PRODUCTS
            notes.append(f"N={products} products; {probe}")
    tenant = bench.new_tenant()
    seconds, job_seconds = await _run_imports(bench, tenant, products, parallel, run)
    await _settled_stats(bench, tenant, products)
    jobs = len(job_seconds)
    return BulkCatalog(tenant, products, seconds, jobs, min(parallel, jobs), job_seconds, notes)
