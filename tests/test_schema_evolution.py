"""Events stored in an older shape still load, project and show in history (upcasting)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import psycopg

from tests.conftest import Service, Tenant, append_raw_event, append_raw_product


def _once_projected(tenant: Tenant, product_id: str) -> dict[str, Any]:
    """The product as the API shows it, once the runner has projected its raw event."""
    deadline = time.monotonic() + 10
    response = tenant.get(f"/products/{product_id}")
    while response.status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.05)
        response = tenant.get(f"/products/{product_id}")
    assert response.status_code == 200, response.text
    product: dict[str, Any] = response.json()
    return product


def test_a_v1_product_created_event_loads_projects_and_shows_in_history(
    tenant: Tenant, service: Service
) -> None:
    # The shape Product.Created had before templates and typed attributes (class_version 1:
    # no "class_version" key, no template_id / attributes in the fields).
    product_id = append_raw_product(
        service.database_url,
        tenant,
        {
            "title": "Legacy lamp",
            "description": None,
            "category": None,
            "status": "DRAFT",
            "brand_id": None,
        },
        timestamp="2025-01-02T03:04:05.000006+00:00",
        actor="legacy-importer",
        class_version=None,
    )
    product = _once_projected(tenant, product_id)
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


def _children_events(service: Service, tenant: Tenant, product_id: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(service.database_url, autocommit=True) as conn:
        return conn.execute(
            "SELECT originator_version, topic, state FROM catalog_events"
            " WHERE originator_id = %s ORDER BY originator_version",
            (f"{tenant.tenant_id}:children:{product_id}",),
        ).fetchall()


def test_a_product_created_with_its_variants_writes_one_children_list_event(
    tenant: Tenant, service: Service
) -> None:
    created = tenant.create_product(
        variants=[
            {"sku": f"ONE-{uuid.uuid4().hex[:8]}-{i}", "price": "1.00", "currency": "EUR"}
            for i in range(3)
        ]
    )
    events = _children_events(service, tenant, created["id"])
    assert [(v, t) for v, t, _ in events] == [(1, "pim.domain.indexes:Children.Started")]
    state = json.loads(bytes(events[0][2]))
    variant_ids = {v["id"] for v in tenant.get(f"/products/{created['id']}/variants").json()}
    assert set(state["members"]) == variant_ids and len(variant_ids) == 3


def test_a_v1_children_list_still_cascades_a_product_delete(
    tenant: Tenant, service: Service
) -> None:
    """A children list stored before lists started with their members (class_version 1:
    Started without members, then one Added per child) loads and cascades as before."""
    product = tenant.create_product(title="Legacy parent")
    variant = tenant.post(
        f"/products/{product['id']}/variants", json={"sku": f"V1-{uuid.uuid4().hex[:8]}"}
    )
    assert variant.status_code == 201, variant.text
    variant_id = variant.json()["id"]
    [(_, _, stored)] = _children_events(service, tenant, product["id"])
    state = json.loads(bytes(stored))
    v1 = {k: v for k, v in state.items() if k not in ("members", "closed", "class_version")}
    added = {**v1, "child_id": variant_id, "child_type": "variant"}
    del added["originator_topic"]
    with psycopg.connect(service.database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE catalog_events SET state = %s WHERE originator_id = %s",
            (json.dumps(v1).encode(), f"{tenant.tenant_id}:children:{product['id']}"),
        )
    append_raw_event(
        service.database_url,
        f"{tenant.tenant_id}:children:{product['id']}",
        2,
        "pim.domain.indexes:Children.Added",
        added,
    )
    deleted = tenant.delete(f"/products/{product['id']}")
    assert deleted.status_code == 204, deleted.text
    # The cascade found the variant through the upcast list: it is gone, and its SKU is free.
    assert tenant.get(f"/products/{product['id']}/variants/{variant_id}").status_code == 404
    sku_owner = tenant.create_product(title="Reuses the SKU")
    reused = tenant.post(
        f"/products/{sku_owner['id']}/variants", json={"sku": variant.json()["sku"]}
    )
    assert reused.status_code == 201, reused.text


def test_a_nul_already_in_the_log_stops_no_projection(
    tenant: Tenant, other_tenant: Tenant, service: Service
) -> None:
    """The API refuses U+0000, which PostgreSQL text and jsonb cannot hold; an event written
    before it did (or by another writer) is projected with U+FFFD instead, and every tenant's
    reads go on."""
    product_id = append_raw_product(
        service.database_url,
        tenant,
        {
            "title": "Nul\x00lamp",
            "description": "a\x00b",
            "category": None,
            "status": "DRAFT",
            "brand_id": None,
            "template_id": None,
            "attributes": {"k\x00": "v\x00"},
        },
    )
    product = _once_projected(tenant, product_id)
    assert product["title"] == "Nul\ufffdlamp" and product["description"] == "a\ufffdb"
    assert product["attributes"] == {"k\ufffd": "v\ufffd"}
    # the log keeps what was written
    history = tenant.get(f"/products/{product_id}/history").json()
    assert history[0]["changes"]["title"]["to"] == "Nul\x00lamp"
    # an update holding NULs (attributes and category feed the validation view's own
    # statements, not only the products view's rows)
    append_raw_event(
        service.database_url,
        f"{tenant.tenant_id}:{product_id}",
        2,
        "pim.domain.product:Product.Updated",
        {
            "timestamp": {"_type_": "datetime_iso", "_data_": "2025-01-03T03:04:05+00:00"},
            "tenant_id": tenant.tenant_id,
            "org_id": tenant.org_id,
            "actor": "legacy\x00importer",
            "actor_email": None,
            "request_id": "raw-nul-update",
            "changes": {
                "attributes": {"from": {"k\x00": "v\x00"}, "to": {"k": "w\x00"}},
                "category": {"from": None, "to": "shoes\x00"},
            },
        },
    )
    # the projections went on past both, for everyone
    theirs = other_tenant.create_product(title="After the NUL")
    assert other_tenant.get(f"/products/{theirs['id']}").status_code == 200
    updated = tenant.get(f"/products/{product_id}").json()
    assert updated["attributes"] == {"k": "w\ufffd"} and updated["category"] == "shoes\ufffd"
    assert tenant.get("/stats").json()["total_products"] >= 1
    issues = tenant.get("/validation", params={"product_id": product_id}).json()
    assert "UNKNOWN_CATEGORY" in {i["code"] for i in issues}
