"""export_100k_csv_s and export_worker_rss_growth_mb: a CSV export of the shared catalog vs.
a raw COPY, and the worker's memory meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from bench.baselines import _raw_copy_export
from bench.context import Bench
from bench.harness import Metric, RequestFailed, Target, Tenant
from bench.jobs import (
    BULK_JOB_TIMEOUT_S,
    _bulk_timeout,
    _check_job,
    _job_seconds,
    _submit_job,
    _wait_job,
)
from bench.servers import RssSampler, rss_mb, worker_pid

EXPORT_POLL_S = 0.05
RSS_SAMPLE_S = 0.05


async def _download(bench: Bench, tenant: Tenant, job_id: str, path: Path) -> tuple[int, int]:
    """Download a job's result to ``path``: (lines, bytes)."""
    lines = size = 0
    async with bench.session.get(
        bench.url(f"/bulk-jobs/{job_id}/result"), headers=tenant.headers, timeout=_bulk_timeout()
    ) as resp:
        if resp.status != 200:
            raise RequestFailed(resp.status, await resp.text(errors="replace"))
        with path.open("wb") as out:
            async for block in resp.content.iter_chunked(1 << 16):
                out.write(block)
                lines += block.count(b"\n")
                size += len(block)
    return lines, size


async def bench_export(bench: Bench) -> list[Metric]:
    """A CSV export of the imported catalog: seconds from POST /export to COMPLETED vs. a raw
    COPY of the same rows, and the worker process's VmRSS growth meanwhile vs. its RSS
    before."""
    catalog = await bench.bulk_catalog()
    n, tenant = catalog.products, catalog.tenant
    pid = worker_pid(bench.service.process.pid)  # jobs run in pim serve's worker process
    before = rss_mb(pid)
    body = json.dumps({"format": "csv"}).encode()
    with RssSampler(pid, RSS_SAMPLE_S) as rss:
        t0 = time.perf_counter()
        job_id = await _submit_job(bench, tenant, "/export", body)
        job = await _wait_job(bench, tenant, job_id, EXPORT_POLL_S, t0 + BULK_JOB_TIMEOUT_S)
        elapsed = time.perf_counter() - t0
    await _check_job(bench, tenant, job, n)
    export_file = bench.infra.work_dir / f"export-{job_id}.csv"
    lines, size = await _download(bench, tenant, job_id, export_file)
    export_file.unlink(missing_ok=True)
    errors = [] if lines == n + 1 else [f"the CSV has {lines} lines, expected {n} rows + header"]
    raw_file = bench.infra.work_dir / f"raw-export-{job_id}.csv"
    try:
        await asyncio.to_thread(_raw_copy_export, bench.database_url, tenant.tenant_id, raw_file)
        raw_s = await asyncio.to_thread(
            _raw_copy_export, bench.database_url, tenant.tenant_id, raw_file
        )
        raw_size = raw_file.stat().st_size
    finally:
        raw_file.unlink(missing_ok=True)
    growth = rss.peak - before
    return [
        Metric(
            "export_100k_csv_s",
            elapsed,
            "s",
            raw_s,
            Target("value", "<=", 10, "s"),
            [
                f"N={n} products, {size / 1e6:.1f} MB CSV; the job's own run "
                f"{_job_seconds(job):.2f} s; raw COPY (warm, second run) {raw_size / 1e6:.1f} MB"
            ],
            errors,
        ),
        Metric(
            "export_worker_rss_growth_mb",
            growth,
            "MB",
            before,
            Target("value", "<=", 50, "MB"),
            [
                f"VmRSS of the worker process (pid {pid}, the child of pim serve that runs jobs) "
                f"{before:.1f} MB before, peak {rss.peak:.1f} MB "
                f"over {len(rss.samples)} samples every {RSS_SAMPLE_S * 1000:.0f} ms"
            ],
        ),
    ]
