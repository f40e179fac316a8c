"""A write that committed answers with its resource even when the read models lag behind.

The test holds the tenant's projection lock (what a long catch-up or a rebuild would do), so
the API's read-your-writes wait times out: every write must still answer its success code
with the resource as the command left it, say so in ``X-PIM-Views-Behind``, and a retry with
the same Idempotency-Key must replay that answer, never a 404. Once the lock is released the
views show exactly what the write answered."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from pim.infra.database import advisory_lock_key
from tests.conftest import Service, Tenant

BEHIND = "X-PIM-Views-Behind"


@contextmanager
def views_held_back(service: Service, tenant: Tenant) -> Iterator[None]:
    """Hold the tenant's catalog projection lock for the duration of the block."""
    with psycopg.connect(service.database_url, autocommit=False) as conn:
        key = advisory_lock_key(f"pim:catalog:tenant:{tenant.tenant_id}")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
        try:
            yield
        finally:
            conn.rollback()


def eventually_json(tenant: Tenant, path: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = tenant.get(path)
        if response.status_code == 200 or time.monotonic() > deadline:
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body
        time.sleep(0.1)


def test_writes_answer_from_the_aggregate_while_views_are_behind(
    service: Service, tenant: Tenant, other_tenant: Tenant
) -> None:
    category = tenant.category("shoes")
    assert tenant.post("/brands", json={"name": "Early"}).headers.get(BEHIND) is None

    with views_held_back(service, tenant):
        key = str(uuid.uuid4())
        body = {
            "title": "Lagging shoe",
            "category": category["slug"],
            "variants": [{"sku": "LAG-1", "price": "10.00", "currency": "EUR"}],
        }
        created = tenant.post("/products", json=body, headers={"Idempotency-Key": key})
        assert created.status_code == 201, created.text
        assert created.headers[BEHIND] == "true"
        product = created.json()
        assert product["title"] == "Lagging shoe"
        assert product["version"] == 1
        assert product["variant_count"] == 1
        assert created.headers["ETag"] == '"1"'
        assert created.headers["Location"].endswith(f"/products/{product['id']}")

        # The retry replays the committed answer: not a 404, not a second product.
        replay = tenant.post("/products", json=body, headers={"Idempotency-Key": key})
        assert replay.status_code == 201, replay.text
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json() == product

        # Updates and nested creates load the aggregate, not the view.
        updated = tenant.patch(
            f"/products/{product['id']}",
            json={"description": "Still lagging"},
            headers={"If-Match": '"1"'},
        )
        assert updated.status_code == 200, updated.text
        assert updated.headers[BEHIND] == "true"
        assert updated.json()["version"] == 2
        assert updated.json()["description"] == "Still lagging"

        brand = tenant.post("/brands", json={"name": "Late"})
        assert brand.status_code == 201, brand.text
        assert brand.headers[BEHIND] == "true"

        # The neighbour's views are not held back.
        neighbour = other_tenant.post("/brands", json={"name": "On time"})
        assert neighbour.status_code == 201, neighbour.text
        assert BEHIND not in neighbour.headers

    # Once the views catch up they show exactly what the writes answered.
    shown = eventually_json(tenant, f"/products/{product['id']}")
    assert shown == updated.json()
    assert eventually_json(tenant, f"/brands/{brand.json()['id']}") == brand.json()
    late = tenant.post("/brands", json={"name": "Caught up"})
    assert late.status_code == 201 and BEHIND not in late.headers


def test_a_replayed_answer_made_while_views_were_behind_stays_a_success(
    service: Service, tenant: Tenant
) -> None:
    key = str(uuid.uuid4())
    with views_held_back(service, tenant):
        first = tenant.post(
            "/categories", json={"name": "Boots", "slug": "boots"}, headers={"Idempotency-Key": key}
        )
        assert first.status_code == 201, first.text
    replay = tenant.post(
        "/categories", json={"name": "Boots", "slug": "boots"}, headers={"Idempotency-Key": key}
    )
    assert replay.status_code == 201, replay.text
    assert replay.json() == first.json()
    listed = tenant.get("/categories").json()
    assert [c["id"] for c in listed if c["slug"] == "boots"] == [first.json()["id"]]
