"""Audit: the tenant's events from the log itself, newest first, with field-level changes."""

from __future__ import annotations

import re
import uuid

import pytest

from tests.conftest import Tenant, assert_problem


def test_audit_records_who_did_what_with_field_level_changes(tenant: Tenant) -> None:
    tenant.category("kitchen")
    created = tenant.post(
        "/products",
        json={"title": "Kettle", "category": "kitchen"},
        headers={"X-Request-ID": "req-create-1"},
    )
    product_id = created.json()["id"]
    tenant.patch(
        f"/products/{product_id}",
        json={"title": "Steel kettle", "category": None},
        headers={"X-Request-ID": "req-update-1"},
    )
    tenant.delete(f"/products/{product_id}")

    entries = tenant.get("/audit", params={"entity_type": "product"}).json()
    assert [e["action"] for e in entries] == [
        "PRODUCT_DELETED",
        "PRODUCT_UPDATED",
        "PRODUCT_CREATED",
    ]
    deleted, updated, first = entries
    assert deleted["changes"]["title"] == {"from": "Steel kettle", "to": None}
    assert first["entity_type"] == "product" and first["entity_id"] == product_id
    assert first["actor"] == tenant.subject
    assert first["actor_email"] == "merchant@example.com"
    assert first["org_id"] == tenant.org_id
    assert first["request_id"] == "req-create-1"
    assert first["changes"]["title"] == {"from": None, "to": "Kettle"}
    assert first["changes"]["category"] == {"from": None, "to": "kitchen"}
    assert updated["changes"] == {
        "title": {"from": "Kettle", "to": "Steel kettle"},
        "category": {"from": "kitchen", "to": None},
    }
    assert updated["request_id"] == "req-update-1"
    # Positions only grow along the log, and the id is the position.
    assert deleted["id"] > updated["id"] > first["id"]
    assert all(e["id"] == e["position"] for e in entries)
    assert first["occurred_at"] <= updated["occurred_at"] <= deleted["occurred_at"]


def test_a_tenant_never_sees_another_tenants_events(tenant: Tenant, other_tenant: Tenant) -> None:
    product = tenant.create_product(title="Private")
    other_tenant.create_product(title="Theirs")
    mine = tenant.get("/audit").json()
    assert {e["entity_id"] for e in mine} == {product["id"]}
    assert (
        tenant.get(
            "/audit", params={"entity_id": other_tenant.get("/products").json()[0]["id"]}
        ).json()
        == []
    )


def test_audit_filters(tenant: Tenant) -> None:
    a = tenant.create_product(title="A")
    b = tenant.create_product(title="B")
    tenant.patch(f"/products/{a['id']}", json={"title": "A2"})
    other_actor = Tenant(
        tenant.base_url, tenant_id=tenant.tenant_id, org_id=tenant.org_id, subject="robot"
    )
    other_actor.patch(f"/products/{b['id']}", json={"title": "B2"})

    def actions(**params: str) -> list[tuple[str, str]]:
        response = tenant.get("/audit", params=params)
        assert response.status_code == 200, response.text
        return [(e["action"], e["entity_id"]) for e in response.json()]

    assert actions(action="PRODUCT_UPDATED") == [
        ("PRODUCT_UPDATED", b["id"]),
        ("PRODUCT_UPDATED", a["id"]),
    ]
    assert actions(entity_id=a["id"]) == [
        ("PRODUCT_UPDATED", a["id"]),
        ("PRODUCT_CREATED", a["id"]),
    ]
    assert actions(actor="robot") == [("PRODUCT_UPDATED", b["id"])]
    assert actions(entity_type="product", action="PRODUCT_CREATED") == [
        ("PRODUCT_CREATED", b["id"]),
        ("PRODUCT_CREATED", a["id"]),
    ]
    # the filters do not care about case
    assert actions(entity_type="PRODUCT", action="product_created") == actions(
        entity_type="product", action="PRODUCT_CREATED"
    )
    everything = tenant.get("/audit").json()
    middle = everything[1]["occurred_at"]
    assert [e["id"] for e in tenant.get("/audit", params={"since": middle}).json()] == [
        e["id"] for e in everything[:2]
    ]
    assert [e["id"] for e in tenant.get("/audit", params={"until": middle}).json()] == [
        e["id"] for e in everything[1:]
    ]
    assert actions(actor="nobody") == []


@pytest.mark.parametrize(
    "params",
    [
        {"action": "PRODUCT_EXPLODED"},
        {"entity_type": "spaceship"},
        {"entity_id": "nope"},
        {"since": "last week"},
        {"limit": "0"},
        {"cursor": "!!"},
    ],
)
def test_bad_audit_filters_are_400(tenant: Tenant, params: dict[str, str]) -> None:
    assert_problem(tenant.get("/audit", params=params), 400)


def test_audit_pages_newest_first_with_a_cursor(tenant: Tenant) -> None:
    for i in range(5):
        tenant.create_product(title=f"P{i}")
    ids: list[int] = []
    url: str | None = "/audit?limit=2"
    while url:
        response = tenant.get(url)
        ids += [e["id"] for e in response.json()]
        link = response.headers.get("link")
        url = re.match(r'<([^>]+)>; rel="next"', link).group(1) if link else None
    assert len(ids) == 5
    assert ids == sorted(ids, reverse=True)


def test_audit_of_a_product_that_never_existed_is_empty(tenant: Tenant) -> None:
    assert tenant.get("/audit", params={"entity_id": str(uuid.uuid4())}).json() == []
