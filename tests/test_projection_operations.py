"""Operators' projection commands: status, blue/green rebuild (also under write load and after
kill -9), and verify catching a corrupted row."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from typing import Any

import psycopg
import pytest

from tests.conftest import PIM, Service, Tenant

PROJECTIONS = ("products", "entities", "stats", "validation")


def pim(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PIM, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=check,
        timeout=300,
    )


def seed(tenant: Tenant, products: int = 3, variants: int = 4) -> None:
    tenant.category(f"cat-{tenant.tenant_id[:8]}")
    for i in range(products):
        tenant.post(
            "/products",
            json={
                "title": f"Seed {i}",
                "status": "DRAFT" if i % 2 else "ACTIVE",
                "category": f"cat-{tenant.tenant_id[:8]}",
                "variants": [
                    {
                        "sku": f"{tenant.tenant_id[:8]}-{i}-{v}",
                        **({"price": "9.99", "currency": "USD"} if v % 2 else {}),
                    }
                    for v in range(variants)
                ],
            },
        )


def test_status_lists_every_projection_and_partition_caught_up_and_claimed(
    tenant: Tenant, service_env: dict[str, str]
) -> None:
    seed(tenant, products=1)
    result = pim(service_env, "projections", "status")
    projections, partitions = result.stdout.split("\n\n")
    lines = projections.splitlines()
    assert lines[0].split() == ["projection", "tenants", "behind", "lag", "events/s"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == set(PROJECTIONS)
    for row in rows.values():
        assert int(row[1]) >= 1  # tenants with events
        assert int(row[2]) == 0 and int(row[3]) == 0  # none behind, no lag
    lines = partitions.splitlines()
    assert lines[0].split() == ["partition", "tenants", "behind", "lag", "events/s", "runner"]
    assert [int(line.split()[0]) for line in lines[1:]] == list(range(16))
    # pim serve's projection runner claimed every partition
    assert all("pim projections" in line for line in lines[1:]), partitions
    assert sum(int(line.split()[1]) for line in lines[1:]) >= 1


def test_verify_passes_on_live_views_and_catches_a_corrupted_row(
    tenant: Tenant, service: Service, service_env: dict[str, str]
) -> None:
    seed(tenant)
    for name in PROJECTIONS:
        result = pim(service_env, "projections", "verify", name, "--quiet", check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    product = tenant.get("/products").json()[0]
    with psycopg.connect(service.database_url, autocommit=True) as conn:
        conn.execute("UPDATE products_view SET title = 'CORRUPTED' WHERE id = %s", (product["id"],))
    result = pim(service_env, "projections", "verify", "products", "--quiet", check=False)
    assert result.returncode == 1
    assert "CORRUPTED" in result.stdout and product["id"] in result.stdout
    # A rebuild repairs it, and reads switch to the rebuilt table.
    pim(service_env, "projections", "rebuild", "products", "--quiet")
    assert tenant.get(f"/products/{product['id']}").json()["title"] == product["title"]
    assert (
        pim(service_env, "projections", "verify", "products", "--quiet", check=False).returncode
        == 0
    )


def test_a_rebuild_under_write_load_ends_equal_to_the_live_projection(
    tenant: Tenant, service_env: dict[str, str]
) -> None:
    seed(tenant)
    stop = threading.Event()
    errors: list[Any] = []

    def write_load() -> None:
        i = 0
        while not stop.is_set() and i < 400:
            response = tenant.post(
                "/products",
                json={"title": f"Load {i}", "variants": [{"sku": f"L-{tenant.tenant_id[:6]}-{i}"}]},
            )
            if response.status_code != 201:
                errors.append(response.text)
            i += 1

    writer = threading.Thread(target=write_load)
    writer.start()
    try:
        time.sleep(0.3)
        for name in ("products", "validation"):
            pim(service_env, "projections", "rebuild", name, "--quiet")
    finally:
        stop.set()
        writer.join()
    assert errors == []
    for name in ("products", "validation", "stats", "entities"):
        result = pim(service_env, "projections", "verify", name, "--quiet", check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    listed = len(tenant.get("/products?limit=100").json())
    assert listed > 3


@pytest.mark.slow
def test_a_rebuild_killed_with_sigkill_resumes_where_it_stopped(
    tenant: Tenant, service: Service, service_env: dict[str, str]
) -> None:
    seed(tenant, products=10, variants=20)
    env = {**os.environ, **service_env, "PIM_PROJECTION_BATCH_SIZE": "1"}
    process = subprocess.Popen(
        [PIM, "projections", "rebuild", "entities", "--quiet"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    killed_at = 0
    with psycopg.connect(service.database_url, autocommit=True) as conn:
        head = conn.execute("SELECT MAX(notification_id) FROM catalog_events").fetchone()[0]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            row = conn.execute(
                "SELECT max(position) FROM projection_positions WHERE name = 'entities__rebuild'"
                " AND tenant_id = %s",
                (tenant.tenant_id,),
            ).fetchone()
            if row and row[0] and 0 < row[0] < head:
                os.kill(process.pid, signal.SIGKILL)
                killed_at = row[0]
                break
            time.sleep(0.001)
    output = process.communicate()[0]
    assert killed_at, f"the rebuild finished before it could be killed: {output!r}"
    result = pim(
        {**service_env, "PIM_PROJECTION_BATCH_SIZE": "1"},
        "projections",
        "rebuild",
        "entities",
        "--quiet",
    )
    assert "rebuilt entities" in result.stdout
    assert (
        pim(service_env, "projections", "verify", "entities", "--quiet", check=False).returncode
        == 0
    )
    assert len(tenant.get("/products?limit=100").json()) == 10
