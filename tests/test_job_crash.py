"""Jobs survive what production throws at them: Redis down when a job is accepted, and a
worker killed with SIGKILL in the middle of a bulk job (every item applied exactly once)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import PIM, Service, Tenant, own_service_env, start_service


def wait_for_job(
    tenant: Tenant, job_id: str, *, timeout: float = 120, until: Any = None
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = tenant.get(f"/bulk-jobs/{job_id}").json()
        if until(job) if until else job["status"] in ("COMPLETED", "FAILED"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not get there in {timeout}s: {job}")


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen(
        [PIM, "worker", "--threads", "2"], env={**os.environ, **env}, stdout=out, stderr=out
    )


@pytest.fixture
def split_env(make_database: Any, redis_url: str, tmp_path: Path) -> dict[str, str]:
    """An API and a worker in separate processes, on a database of their own."""
    return own_service_env(make_database(), redis_url, tmp_path)


@pytest.mark.slow
def test_a_job_accepted_while_redis_is_down_runs_once_redis_is_back(
    split_env: dict[str, str], tmp_path: Path
) -> None:
    down = {**split_env, "PIM_REDIS_URL": "redis://127.0.0.1:1/0"}  # nothing listens there
    api: Service = start_service(down, tmp_path / "api.log", command="api")
    try:
        tenant = Tenant(api.base_url)
        tenant.create_product(title="Waiting")
        response = tenant.post("/export", json={"format": "csv"})
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        assert tenant.get(f"/bulk-jobs/{job_id}").json()["status"] == "PENDING"
        # Redis comes back: a worker starts and the job's creation event is dispatched.
        worker = start_worker(split_env, tmp_path / "worker.log")
        try:
            job = wait_for_job(tenant, job_id, timeout=60)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        assert job["status"] == "COMPLETED", job
        csv_text = tenant.get(f"/bulk-jobs/{job_id}/result").text
        assert "Waiting" in csv_text
    finally:
        api.stop()


def kill_mid_job(
    tenant: Tenant, job_id: str, worker: subprocess.Popen[bytes], items: int
) -> dict[str, Any]:
    """SIGKILL the worker once the job is between 5% and 80% done; the job as left."""
    wait_for_job(
        tenant,
        job_id,
        timeout=300,
        until=lambda j: items * 0.05 < j["processed_items"] < items * 0.8,
    )
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    stalled: dict[str, Any] = tenant.get(f"/bulk-jobs/{job_id}").json()
    assert stalled["status"] == "PROCESSING" and stalled["processed_items"] < items, stalled
    return stalled


def log_counts(database_url: str, tenant_id: str) -> dict[str, int]:
    """Events per topic in the tenant's catalog log: the proof of exactly once."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT topic, count(*) FROM catalog_events WHERE originator_id LIKE %s GROUP BY 1",
            (f"{tenant_id}:%",),
        ).fetchall()
    return {str(topic): int(n) for topic, n in rows}


@pytest.mark.slow
def test_a_worker_killed_mid_job_resumes_and_applies_every_item_exactly_once(
    split_env: dict[str, str], tmp_path: Path
) -> None:
    """Two 100,000-item jobs, each with its worker SIGKILLed in the middle: an import (every
    product created once) and a price multiply (not idempotent: twice would give 12.10)."""
    items = 100_000
    env = split_env
    api = start_service(env, tmp_path / "api.log", command="api")
    worker = start_worker(env, tmp_path / "worker1.log")
    try:
        tenant = Tenant(api.base_url)
        products = [
            {"title": f"I{i}", "variants": [{"sku": f"C{i}", "price": "10.00", "currency": "USD"}]}
            for i in range(items)
        ]
        seeded = tenant.post(
            "/bulk-jobs", json={"type": "BULK_IMPORT", "payload": {"products": products}}
        )
        assert seeded.status_code == 202, seeded.text
        import_id = seeded.json()["id"]
        kill_mid_job(tenant, import_id, worker, items)
        worker = start_worker(env, tmp_path / "worker2.log")
        imported = wait_for_job(tenant, import_id, timeout=600)
        assert imported["status"] == "COMPLETED", imported
        assert imported["processed_items"] == imported["succeeded_items"] == items, imported
        counts = log_counts(env["PIM_DATABASE_URL"], tenant.tenant_id)
        assert counts["pim.domain.product:Product.Created"] == items
        assert counts["pim.domain.variant:Variant.Created"] == items
        assert counts["pim.domain.indexes:UniqueKey.Claimed"] == items  # one SKU each

        update = tenant.post(
            "/bulk-jobs",
            json={
                "type": "BULK_UPDATE",
                "payload": {"filter": {}, "price": {"op": "multiply", "value": "1.10"}},
            },
        )
        assert update.status_code == 202, update.text
        job_id = update.json()["id"]
        kill_mid_job(tenant, job_id, worker, items)
        worker = start_worker(env, tmp_path / "worker3.log")
        job = wait_for_job(tenant, job_id, timeout=600)
        assert job["status"] == "COMPLETED", job
        assert job["processed_items"] == job["succeeded_items"] == items
        assert job["failed_items"] == 0

        # Every variant was multiplied exactly once: one price event each in the log, and the
        # read model agrees (and equals a rebuild, below).
        counts = log_counts(env["PIM_DATABASE_URL"], tenant.tenant_id)
        assert counts["pim.domain.variant:Variant.Updated"] == items
        with psycopg.connect(env["PIM_DATABASE_URL"]) as conn:
            prices = dict(
                conn.execute(
                    "SELECT doc->>'price', count(*) FROM entities_view WHERE tenant_id = %s"
                    " AND entity_type = 'variant' GROUP BY 1",
                    (tenant.tenant_id,),
                ).fetchall()
            )
        assert prices == {"11.00": items}
        stats = tenant.get("/stats").json()
        assert (stats["total_products"], stats["total_variants"]) == (items, items)
        for finished in (import_id, job_id):
            results = tenant.get(f"/bulk-jobs/{finished}/result").text.splitlines()
            indexes = [json.loads(line)["index"] for line in results]
            assert sorted(indexes) == list(range(items))  # one result per item, none repeated

        # The read models equal a rebuild from the log.
        for name in ("products", "entities", "validation", "stats"):
            verify = subprocess.run(
                [PIM, "projections", "verify", name, "--quiet"],
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        if worker.poll() is None:
            worker.terminate()
            worker.wait(timeout=30)
        api.stop()
