"""One tenant's load never stalls another: read-your-writes per tenant, appends that do not
queue behind another tenant's, fair job slots, projection runners sharing partitions, and
every event projected exactly once whoever projects it."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from pim.infra.database import advisory_lock_key
from tests.conftest import (
    PIM,
    Service,
    Tenant,
    append_raw_product,
    own_service_env,
    start_service,
)
from tests.test_job_crash import wait_for_job

PROJECTIONS = ("products", "entities", "stats", "validation")


@contextmanager
def lock_held(database_url: str, name: str) -> Iterator[None]:
    """Hold the advisory lock named ``name`` (as the service derives its keys) until exit."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (advisory_lock_key(name),))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (advisory_lock_key(name),))


def import_body(count: int, prefix: str) -> dict[str, Any]:
    return {
        "type": "BULK_IMPORT",
        "payload": {
            "products": [
                {"title": f"{prefix} {i}", "variants": [{"sku": f"{prefix}-{i}"}]}
                for i in range(count)
            ]
        },
    }


def pim(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PIM, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )


def test_a_tenants_writes_are_read_at_once_while_another_tenants_projection_is_held_back(
    service: Service,
) -> None:
    a, b = Tenant(service.base_url), Tenant(service.base_url)
    a.create_product(title="A's first")
    # Nothing may project tenant A's events: its import piles up a backlog behind the lock.
    with lock_held(service.database_url, f"pim:catalog:tenant:{a.tenant_id}"):
        job = a.post("/bulk-jobs", json=import_body(1500, f"A{a.tenant_id[:6]}"))
        assert job.status_code == 202, job.text
        wait_for_job(a, job.json()["id"], until=lambda j: j["processed_items"] >= 500)
        for i in range(15):
            started = time.monotonic()
            created = b.post("/products", json={"title": f"B {i}"})
            elapsed = time.monotonic() - started
            assert created.status_code == 201, created.text
            assert elapsed < 1.0, f"B's write took {elapsed:.2f}s behind A's backlog"
            # Read your writes: every read right after the write shows it.
            listed = {p["id"] for p in b.get("/products", params={"limit": 100}).json()}
            assert created.json()["id"] in listed
            assert b.get("/stats").json()["total_products"] == i + 1
        assert a.get("/stats").json()["total_products"] == 1  # A's views really are held
        assert a.get(f"/bulk-jobs/{job.json()['id']}").json()["status"] == "PROCESSING"
    finished = wait_for_job(a, job.json()["id"], timeout=120)
    assert finished["status"] == "COMPLETED" and finished["succeeded_items"] == 1500
    assert a.get("/stats").json()["total_products"] == 1501


def test_a_tenant_appends_while_another_tenant_holds_its_append_lock(service: Service) -> None:
    """A tenant's appends take turns on its own lock only (a bulk batch of another tenant
    inserting thousands of events holds that tenant's lock, never this one's)."""
    a, b = Tenant(service.base_url), Tenant(service.base_url)
    a.create_product(title="A")
    b.create_product(title="B")
    results: dict[str, Any] = {}

    def a_writes() -> None:
        started = time.monotonic()
        results["a"] = a.post("/products", json={"title": "A waits"})
        results["a_s"] = time.monotonic() - started

    with lock_held(service.database_url, f"pim:append:{a.tenant_id}"):
        waiting = threading.Thread(target=a_writes)
        waiting.start()
        time.sleep(0.2)
        started = time.monotonic()
        created = b.post("/products", json={"title": "B goes"})
        assert created.status_code == 201 and time.monotonic() - started < 0.5
        time.sleep(0.8)
        assert "a" not in results  # A's own write waits for A's lock
    waiting.join(timeout=10)
    assert results["a"].status_code == 201, results["a"].text
    assert results["a_s"] >= 0.9


@pytest.mark.slow
def test_every_event_is_projected_exactly_once_under_inline_and_background_work(
    make_database: Any, redis_url: str, tmp_path: Path
) -> None:
    env = own_service_env(make_database(), redis_url, tmp_path)
    service = start_service(env, tmp_path / "serve.log")
    try:
        tenants = [Tenant(service.base_url) for _ in range(3)]
        for t in tenants:
            t.category(f"c-{t.tenant_id[:6]}")
            t.attribute("color")
        errors: list[str] = []

        def writer(t: Tenant, n: int) -> None:
            for i in range(n):
                made = t.post(
                    "/products",
                    json={
                        "title": f"P{i}",
                        "category": f"c-{t.tenant_id[:6]}",
                        "variants": [{"sku": f"{t.tenant_id[:6]}-{i}-{k}"} for k in range(2)],
                    },
                )
                if made.status_code != 201:
                    errors.append(made.text)
                    continue
                pid = made.json()["id"]
                if i % 3 == 0:
                    t.patch(f"/products/{pid}", json={"attributes": {"color": "red"}})
                if i % 5 == 0:
                    t.delete(f"/products/{pid}")
                if i % 4 == 0:  # written past the API: only background runners project it
                    append_raw_product(
                        env["PIM_DATABASE_URL"],
                        t,
                        {
                            "title": f"raw {i}",
                            "description": None,
                            "category": None,
                            "status": "DRAFT",
                            "brand_id": None,
                            "template_id": None,
                            "attributes": {},
                        },
                    )

        jobs = [t.post("/bulk-jobs", json=import_body(300, f"J{t.tenant_id[:6]}")) for t in tenants]
        threads = [threading.Thread(target=writer, args=(t, 30)) for t in tenants]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        for t, job in zip(tenants, jobs, strict=True):
            assert wait_for_job(t, job.json()["id"], timeout=120)["status"] == "COMPLETED"
        deadline = time.monotonic() + 30
        while httpx.get(f"{service.base_url}/readyz").status_code != 200:
            assert time.monotonic() < deadline, httpx.get(f"{service.base_url}/readyz").text
            time.sleep(0.1)
        for name in PROJECTIONS:
            result = pim(env, "projections", "verify", name, "--quiet")
            assert result.returncode == 0, result.stdout + result.stderr
        for t in tenants:
            # 30 created, 6 deleted, 8 raw, 300 imported
            assert t.get("/stats").json()["total_products"] == 30 - 6 + 8 + 300
    finally:
        service.stop()


def _partition_runners(env: dict[str, str]) -> list[str]:
    result = pim(env, "projections", "status")
    assert result.returncode == 0, result.stderr
    table = result.stdout.split("\n\n")[1].splitlines()[1:]
    return [line.split(None, 5)[5] for line in table]


@pytest.mark.slow
def test_projection_runners_share_the_partitions_and_take_over_from_a_dead_one(
    make_database: Any, redis_url: str, tmp_path: Path
) -> None:
    env = own_service_env(make_database(), redis_url, tmp_path)
    api = start_service(env, tmp_path / "api.log", command="api")  # no runner of its own
    out = (tmp_path / "runners.log").open("ab")
    runners = [
        subprocess.Popen(
            [PIM, "projections", "run"], env={**os.environ, **env}, stdout=out, stderr=out
        )
        for _ in range(2)
    ]
    try:
        deadline = time.monotonic() + 30
        while True:
            owners = _partition_runners(env)
            counts = {o: owners.count(o) for o in set(owners)}
            if "-" not in counts and sorted(counts.values()) == [8, 8]:
                break
            assert time.monotonic() < deadline, owners
            time.sleep(0.5)
        tenants = [Tenant(api.base_url) for _ in range(8)]

        def raw(t: Tenant, title: str) -> str:
            return append_raw_product(
                env["PIM_DATABASE_URL"],
                t,
                {
                    "title": title,
                    "description": None,
                    "category": None,
                    "status": "ACTIVE",
                    "brand_id": None,
                    "template_id": None,
                    "attributes": {},
                },
            )

        def projected(t: Tenant, product_id: str) -> bool:
            return t.get(f"/products/{product_id}").status_code == 200

        written = [(t, raw(t, "by the runners")) for t in tenants]
        deadline = time.monotonic() + 15
        while not all(projected(t, p) for t, p in written):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        runners[0].send_signal(signal.SIGKILL)
        runners[0].wait()
        deadline = time.monotonic() + 30
        while True:
            owners = _partition_runners(env)
            if len(set(owners)) == 1 and owners[0] != "-":
                break  # the survivor holds all 16
            assert time.monotonic() < deadline, owners
            time.sleep(0.5)
        written = [(t, raw(t, "after the takeover")) for t in tenants]
        deadline = time.monotonic() + 15
        while not all(projected(t, p) for t, p in written):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        for runner in runners:
            if runner.poll() is None:
                runner.terminate()
                runner.wait(timeout=15)
        api.stop()


@pytest.mark.slow
def test_a_tenant_with_many_jobs_queued_cannot_starve_another_tenants_export(
    make_database: Any, redis_url: str, tmp_path: Path
) -> None:
    env = {**own_service_env(make_database(), redis_url, tmp_path), "PIM_JOBS_PER_TENANT": "1"}
    service = start_service(env, tmp_path / "serve.log")
    try:
        a, b = Tenant(service.base_url), Tenant(service.base_url)
        b.create_product(title="B's only product")
        a_jobs = [
            a.post("/bulk-jobs", json=import_body(1500, f"A{i}-{a.tenant_id[:6]}")).json()["id"]
            for i in range(5)  # more than the worker's threads
        ]
        wait_for_job(a, a_jobs[0], until=lambda j: j["status"] == "PROCESSING")
        started = time.monotonic()
        export = b.post("/export", json={"format": "csv"})
        assert export.status_code == 202, export.text
        done = wait_for_job(b, export.json()["id"], timeout=30)
        assert done["status"] == "COMPLETED"
        assert time.monotonic() - started < 5.0
        # A's jobs were waiting their turn, not running all at once
        assert any(a.get(f"/bulk-jobs/{j}").json()["status"] == "PENDING" for j in a_jobs)
        finished = [wait_for_job(a, j, timeout=300) for j in a_jobs]
        assert all(j["status"] == "COMPLETED" for j in finished)
        spans = sorted((j["started_at"], j["finished_at"]) for j in finished)
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end <= start, "two of A's jobs ran at once"
    finally:
        service.stop()
