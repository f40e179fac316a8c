"""Events stored in an older shape still load, project and show in history (upcasting)."""

from __future__ import annotations

import json
import time
import uuid

import psycopg

from tests.conftest import Service, Tenant


def test_a_v1_product_created_event_loads_projects_and_shows_in_history(
    tenant: Tenant, service: Service
) -> None:
    product_id = str(uuid.uuid4())
    # The shape Product.Created had before templates and typed attributes (class_version 1:
    # no "class_version" key, no template_id / attributes in the fields).
    state = {
        "timestamp": {"_type_": "datetime_iso", "_data_": "2025-01-02T03:04:05.000006+00:00"},
        "tenant_id": tenant.tenant_id,
        "org_id": tenant.org_id,
        "actor": "legacy-importer",
        "actor_email": None,
        "request_id": "legacy-1",
        "originator_topic": "pim.domain.product:Product",
        "fields": {
            "title": "Legacy lamp",
            "description": None,
            "category": None,
            "status": "DRAFT",
            "brand_id": None,
        },
    }
    with psycopg.connect(service.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO catalog_events (originator_id, originator_version, topic, state)"
            " VALUES (%s, 1, 'pim.domain.product:Product.Created', %s)",
            (f"{tenant.tenant_id}:{product_id}", json.dumps(state).encode()),
        )
        conn.execute("NOTIFY catalog_events")
    deadline = time.monotonic() + 10
    response = tenant.get(f"/products/{product_id}")
    while response.status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.05)
        response = tenant.get(f"/products/{product_id}")
    assert response.status_code == 200, response.text
    product = response.json()
    assert product["title"] == "Legacy lamp" and product["status"] == "DRAFT"
    assert product["attributes"] == {} and product["template_id"] is None
    assert product["created_at"] == "2025-01-02T03:04:05.000006Z"

    history = tenant.get(f"/products/{product_id}/history").json()
    assert [(h["version"], h["action"], h["actor"]) for h in history] == [
        (1, "PRODUCT_CREATED", "legacy-importer")
    ]
    # The upcast aggregate takes new events like any other.
    updated = tenant.patch(f"/products/{product_id}", json={"status": "ACTIVE"})
    assert updated.status_code == 200 and updated.json()["version"] == 2
    assert tenant.get(f"/products/{product_id}", params={"version": "1"}).json()["status"] == (
        "DRAFT"
    )
    stats = tenant.get("/stats").json()
    assert stats["products_by_status"]["ACTIVE"] == 1
