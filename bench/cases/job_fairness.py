"""job_fairness: another tenant's export and small bulk job, alone and while one tenant has
several large imports queued.

Tenant B (B_PRODUCTS products, imported first) runs a CSV export of its catalog and a
BULK_UPDATE of every product (a status change), one after the other, on a quiet service: the
baseline. Then tenant A queues FAIRNESS_JOBS BULK_IMPORT jobs of FAIRNESS_PRODUCTS products
(more than one tenant may run at once), and B runs the same two jobs again. Each job's time is
the service's own (created_at -> finished_at); targets: at most 2x alone, and every B job
started (started_at) within 1 s of its creation.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from datetime import datetime
from typing import Any

import msgspec

from bench.context import Bench
from bench.harness import Metric, Target, Tenant
from bench.jobs import (
    BULK_JOB_TIMEOUT_S,
    _check_job,
    _import_products,
    _submit_job,
    _wait_job,
)

FAIRNESS_JOBS = 4
FAIRNESS_PRODUCTS = 10_000
B_PRODUCTS = 2_000
POLL_S = 0.02


def _at(job: dict[str, Any], field: str) -> datetime:
    return datetime.fromisoformat(str(job[field]).replace("Z", "+00:00"))


def _took(job: dict[str, Any]) -> float:
    return (_at(job, "finished_at") - _at(job, "created_at")).total_seconds()


def _start_delay(job: dict[str, Any]) -> float:
    return (_at(job, "started_at") - _at(job, "created_at")).total_seconds()


async def _run(bench: Bench, tenant: Tenant, path: str, body: dict[str, Any]) -> dict[str, Any]:
    job_id = await _submit_job(bench, tenant, path, json.dumps(body).encode())
    deadline = time.perf_counter() + BULK_JOB_TIMEOUT_S
    job = await _wait_job(bench, tenant, job_id, POLL_S, deadline)
    if job["status"] != "COMPLETED" or job["failed_items"]:
        raise RuntimeError(f"B's {job['type']} job {job_id}: {job}")
    return job


async def _b_jobs(bench: Bench, tenant: Tenant, status: str) -> tuple[dict[str, Any], ...]:
    export = await _run(bench, tenant, "/export", {"format": "csv"})
    update = await _run(
        bench,
        tenant,
        "/bulk-jobs",
        {"type": "BULK_UPDATE", "payload": {"filter": {}, "set": {"status": status}}},
    )
    return export, update


async def bench_job_fairness(bench: Bench) -> list[Metric]:
    run = secrets.token_hex(4)
    encoder = msgspec.json.Encoder()
    b = bench.new_tenant()
    seed = await _run(
        bench,
        b,
        "/bulk-jobs",
        {
            "type": "BULK_IMPORT",
            "payload": {"products": _import_products(0, B_PRODUCTS, f"jb{run}")},
        },
    )
    await _check_job(bench, b, seed, B_PRODUCTS)
    await _b_jobs(bench, b, "ACTIVE")  # warm-up
    alone = await _b_jobs(bench, b, "DRAFT")

    a = bench.new_tenant()
    a_jobs = [
        await _submit_job(
            bench,
            a,
            "/bulk-jobs",
            encoder.encode(
                {
                    "type": "BULK_IMPORT",
                    "payload": {"products": _import_products(0, FAIRNESS_PRODUCTS, f"ja{run}{n}")},
                }
            ),
        )
        for n in range(FAIRNESS_JOBS)
    ]
    # B starts once A's imports are running (and the rest of them queued).
    deadline = time.perf_counter() + 60
    while True:
        states = [(await _job_state(bench, a, job_id)) for job_id in a_jobs]
        if "PROCESSING" in states:
            break
        if time.perf_counter() > deadline:
            raise RuntimeError(f"A's imports did not start: {states}")
        await asyncio.sleep(0.1)
    during = await _b_jobs(bench, b, "ACTIVE")
    a_states = [await _job_state(bench, a, job_id) for job_id in a_jobs]
    # Let A's imports end, so the cases after this one run on a quiet service.
    finish = time.perf_counter() + BULK_JOB_TIMEOUT_S
    for job_id in a_jobs:
        await _check_job(
            bench, a, await _wait_job(bench, a, job_id, 0.5, finish), FAIRNESS_PRODUCTS
        )
    notes = [
        f"B: {B_PRODUCTS} products; A: {FAIRNESS_JOBS} BULK_IMPORT jobs of {FAIRNESS_PRODUCTS}"
        f" products submitted at once; A's jobs when B's finished: {', '.join(a_states)}",
        f"alone: export {_took(alone[0]):.2f} s, bulk update {_took(alone[1]):.2f} s;"
        f" during: export {_took(during[0]):.2f} s, bulk update {_took(during[1]):.2f} s",
    ]
    twice = Target("ratio", "<=", 2)
    return [
        Metric("job_fairness_export_s", _took(during[0]), "s", _took(alone[0]), twice, notes),
        Metric("job_fairness_bulk_update_s", _took(during[1]), "s", _took(alone[1]), twice),
        Metric(
            "job_fairness_start_delay_s",
            max(_start_delay(job) for job in during),
            "s",
            max(_start_delay(job) for job in alone),
            Target("value", "<=", 1, "s"),
        ),
    ]


async def _job_state(bench: Bench, tenant: Tenant, job_id: str) -> str:
    async with bench.session.get(bench.url(f"/bulk-jobs/{job_id}"), headers=tenant.headers) as r:
        return str((await r.json())["status"])
