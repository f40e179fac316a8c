"""What every collection promises a client, checked on each of them through HTTP: create,
read-only fields, merge-patch updates and their audit, If-Match, delete, path and body
errors, keyset paging, Idempotency-Key, tenant isolation and read-only tokens."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.conftest import Tenant, assert_problem

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
NEXT_LINK = re.compile(r'<([^>]+)>;\s*rel="next"')
FORGED_ID = "00000000-0000-4000-8000-000000000000"


def unique() -> str:
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class Case:
    """One collection of one tenant, ready to take items."""

    path: str  # the collection, e.g. "/brands" or "/products/<id>/variants"
    new_body: Callable[[], dict[str, Any]]  # a valid create body, unique on every call
    update: dict[str, Any]  # one field, changed to a value already in normal form
    entity: str  # audit action prefix, e.g. "ATTRIBUTE_GROUP"
    optional: str  # a field of the create body that null clears
    nested: bool = False  # lives under a product
    unique: str | None = None  # a field whose value is unique per tenant
    references: tuple[str, ...] = ()  # fields naming other items of the tenant


def products(tenant: Tenant) -> Case:
    return Case(
        "/products",
        lambda: {"title": f"Trail shoe {unique()}", "description": "Light", "status": "DRAFT"},
        {"title": "Road shoe"},
        "PRODUCT",
        "description",
    )


def variants(tenant: Tenant) -> Case:
    product = tenant.create_product()

    def body() -> dict[str, Any]:
        return {
            "sku": f"SKU-{unique()}",
            "barcode": "4006381333931",
            "price": "12.50",
            "currency": "USD",
            "option_values": {"size": unique()},
        }

    return Case(
        f"/products/{product['id']}/variants",
        body,
        {"barcode": "96385074"},
        "VARIANT",
        "barcode",
        nested=True,
        unique="sku",
    )


def categories(tenant: Tenant) -> Case:
    return Case(
        "/categories",
        lambda: {"name": "Shoes", "slug": f"shoes-{unique()}", "description": "Footwear"},
        {"name": "Boots"},
        "CATEGORY",
        "description",
        unique="slug",
    )


def brands(tenant: Tenant) -> Case:
    return Case(
        "/brands",
        lambda: {
            "name": f"Acme {unique()}",
            "description": "Outdoor",
            "logo_url": "https://cdn.example.com/acme.png",
        },
        {"description": "Indoor"},
        "BRAND",
        "logo_url",
        unique="name",
    )


def attributes(tenant: Tenant) -> Case:
    return Case(
        "/attributes",
        lambda: {
            "name": "Colour",
            "key": f"colour_{unique()}",
            "type": "SELECT",
            "options": ["red", "blue"],
            "description": "Swatch colour",
        },
        {"options": ["red", "blue", "green"]},
        "ATTRIBUTE",
        "description",
        unique="key",
    )


def attribute_groups(tenant: Tenant) -> Case:
    attribute = tenant.attribute(f"size_{unique()}")
    return Case(
        "/attribute-groups",
        lambda: {
            "name": f"Dimensions {unique()}",
            "key": f"dims_{unique()}",
            "description": "How big",
            "attribute_ids": [attribute["id"]],
        },
        {"name": "Sizes"},
        "ATTRIBUTE_GROUP",
        "description",
        references=("attribute_ids",),
    )


def templates(tenant: Tenant) -> Case:
    attribute = tenant.attribute(f"size_{unique()}")
    return Case(
        "/templates",
        lambda: {
            "name": f"Shoe {unique()}",
            "description": "Footwear",
            "attribute_ids": [attribute["id"]],
            "required_attribute_ids": [attribute["id"]],
        },
        {"name": "Boot"},
        "TEMPLATE",
        "description",
        references=("attribute_ids", "required_attribute_ids"),
    )


def media(tenant: Tenant) -> Case:
    product = tenant.create_product()
    return Case(
        "/media",
        lambda: {
            "url": f"https://cdn.example.com/{unique()}.jpg",
            "product_id": product["id"],
            "alt_text": "Front",
        },
        {"alt_text": "Back"},
        "MEDIA",
        "alt_text",
        references=("product_id",),
    )


COLLECTIONS = [
    products,
    variants,
    categories,
    brands,
    attributes,
    attribute_groups,
    templates,
    media,
]


@pytest.fixture(params=COLLECTIONS, ids=lambda factory: factory.__name__)
def factory(request: pytest.FixtureRequest) -> Callable[[Tenant], Case]:
    made: Callable[[Tenant], Case] = request.param
    return made


@pytest.fixture
def case(factory: Callable[[Tenant], Case], tenant: Tenant) -> Case:
    return factory(tenant)


def create(tenant: Tenant, case: Case) -> dict[str, Any]:
    response = tenant.post(case.path, json=case.new_body())
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def item_path(case: Case, item: dict[str, Any]) -> str:
    return f"{case.path}/{item['id']}"


def audit_of(tenant: Tenant, entity_id: str) -> list[dict[str, Any]]:
    response = tenant.get("/audit", params={"entity_id": entity_id})
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()
    return entries


def test_create_is_201_with_the_resource_an_absolute_location_and_an_etag(
    tenant: Tenant, case: Case
) -> None:
    body = case.new_body()
    response = tenant.post(case.path, json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    for name, value in body.items():
        assert created[name] == value, name
    uuid.UUID(created["id"])
    assert created["version"] == 1
    assert RFC3339_UTC.match(created["created_at"]), created["created_at"]
    assert RFC3339_UTC.match(created["updated_at"]), created["updated_at"]
    assert created["created_at"] == created["updated_at"]
    assert response.headers["etag"] == '"1"'
    location = response.headers["location"]
    assert location == f"{tenant.base_url}/api/v1/pim{case.path}/{created['id']}"
    fetched = httpx.get(location, headers=tenant.headers())
    assert fetched.status_code == 200, fetched.text
    assert fetched.json() == created
    assert fetched.headers["etag"] == '"1"'


def test_read_only_fields_in_a_body_are_ignored_so_get_edit_put_works(
    tenant: Tenant, case: Case
) -> None:
    forged_id = str(uuid.uuid4())
    response = tenant.post(
        case.path,
        json={
            **case.new_body(),
            "id": forged_id,
            "version": 99,
            "created_at": "2000-01-01T00:00:00Z",
            "updated_at": "2000-01-01T00:00:00Z",
        },
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["id"] != forged_id and created["version"] == 1
    assert created["created_at"].startswith(str(datetime.now(UTC).year))
    assert_problem(tenant.get(f"{case.path}/{forged_id}"), 404)

    fetched = tenant.get(item_path(case, created)).json()
    edited = {**fetched, **case.update}
    put = tenant.put(item_path(case, created), json=edited)
    assert put.status_code == 200, put.text
    assert put.headers["etag"] == '"2"'
    updated = put.json()
    assert updated["version"] == 2 and updated["id"] == created["id"]
    assert updated["created_at"] == created["created_at"]
    assert updated["updated_at"] > created["updated_at"]
    for name, value in case.update.items():
        assert updated[name] == value
    assert tenant.get(item_path(case, created)).json() == updated
    (entry, _) = audit_of(tenant, created["id"])
    assert set(entry["changes"]) == set(case.update)  # no read-only field recorded


def test_an_update_that_changes_nothing_records_nothing_and_a_real_one_is_audited(
    tenant: Tenant, case: Case
) -> None:
    body = case.new_body()
    created = tenant.post(case.path, json=body).json()
    path = item_path(case, created)
    # The same values again, the resource as read, and an empty patch: none is a change.
    for same in (body, tenant.get(path).json(), {}):
        response = tenant.patch(path, json=same)
        assert response.status_code == 200, response.text
        assert response.headers["etag"] == '"1"'
        assert response.json() == created
    entries = audit_of(tenant, created["id"])
    assert [e["action"] for e in entries] == [f"{case.entity}_CREATED"]

    response = tenant.patch(path, json=case.update)
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"2"'
    updated = response.json()
    assert updated["version"] == 2
    entries = audit_of(tenant, created["id"])
    assert [e["action"] for e in entries] == [f"{case.entity}_UPDATED", f"{case.entity}_CREATED"]
    latest = entries[0]
    assert latest["entity_type"] == case.entity.lower()
    assert latest["entity_id"] == created["id"]
    assert latest["actor"] == tenant.subject and latest["org_id"] == tenant.org_id
    (name,) = case.update
    assert latest["changes"] == {name: {"from": created[name], "to": updated[name]}}
    assert created[name] != updated[name] == case.update[name]


def test_null_clears_an_optional_field_and_absent_fields_stay(tenant: Tenant, case: Case) -> None:
    created = create(tenant, case)
    assert created[case.optional] is not None
    response = tenant.patch(item_path(case, created), json={case.optional: None})
    assert response.status_code == 200, response.text
    cleared = response.json()
    assert cleared[case.optional] is None and cleared["version"] == 2
    assert {
        k: v for k, v in cleared.items() if k not in (case.optional, "version", "updated_at")
    } == {k: v for k, v in created.items() if k not in (case.optional, "version", "updated_at")}
    assert tenant.get(item_path(case, created)).json() == cleared
    changes = audit_of(tenant, created["id"])[0]["changes"]
    assert changes == {case.optional: {"from": created[case.optional], "to": None}}


def test_a_stale_if_match_is_412_and_the_current_one_succeeds(tenant: Tenant, case: Case) -> None:
    created = create(tenant, case)
    path = item_path(case, created)
    assert tenant.patch(path, json=case.update).json()["version"] == 2
    (name,) = case.update
    revert = {name: created[name]}
    stale = {"If-Match": '"1"'}
    assert_problem(tenant.put(path, json=revert, headers=stale), 412)
    assert_problem(tenant.patch(path, json=revert, headers=stale), 412)
    assert_problem(tenant.delete(path, headers=stale), 412)
    current = tenant.get(path)
    assert current.status_code == 200 and current.headers["etag"] == '"2"'
    assert current.json()[name] == case.update[name]  # nothing was applied

    put = tenant.put(path, json=revert, headers={"If-Match": '"2"'})
    assert put.status_code == 200, put.text
    assert put.headers["etag"] == '"3"' and put.json()[name] == created[name]
    patched = tenant.patch(path, json=case.update, headers={"If-Match": '"3"'})
    assert patched.status_code == 200, patched.text
    assert patched.headers["etag"] == '"4"' and patched.json()[name] == case.update[name]
    assert tenant.delete(path, headers={"If-Match": '"4"'}).status_code == 204
    assert_problem(tenant.get(path), 404)


def test_delete_is_204_then_get_and_a_second_delete_are_404(tenant: Tenant, case: Case) -> None:
    created = create(tenant, case)
    path = item_path(case, created)
    response = tenant.delete(path)
    assert response.status_code == 204 and response.content == b""
    assert_problem(tenant.get(path), 404)
    assert_problem(tenant.delete(path), 404)
    assert_problem(tenant.patch(path, json=case.update), 404)
    assert created["id"] not in [item["id"] for item in tenant.get(case.path).json()]
    assert audit_of(tenant, created["id"])[0]["action"] == f"{case.entity}_DELETED"


def test_bad_paths_and_bodies_are_problems_with_the_right_status(
    tenant: Tenant, case: Case
) -> None:
    created = create(tenant, case)
    path = item_path(case, created)
    for method in ("GET", "PUT", "PATCH", "DELETE"):
        kwargs: dict[str, Any] = {} if method in ("GET", "DELETE") else {"json": case.update}
        assert_problem(tenant.request(method, f"{case.path}/not-a-uuid", **kwargs), 404)
        assert_problem(tenant.request(method, f"{case.path}/{FORGED_ID}", **kwargs), 404)

    unknown = assert_problem(tenant.post(case.path, json={**case.new_body(), "colour": 1}), 422)
    assert "colour" in [e["field"] for e in unknown["errors"]]
    assert_problem(tenant.patch(path, json={"colour": "red"}), 422, "colour")

    json_type = {"Content-Type": "application/json"}
    assert_problem(tenant.post(case.path, content=b'{"name": ', headers=json_type), 400)
    assert_problem(tenant.patch(path, content=b"{bad json", headers=json_type), 400)

    text = {"Content-Type": "text/plain"}
    assert_problem(tenant.post(case.path, content=b"name=x", headers=text), 415)
    assert_problem(tenant.put(path, content=b"name=x", headers=text), 415)

    assert [item["id"] for item in tenant.get(case.path).json()] == [created["id"]]
    assert tenant.get(path).json() == created


def test_lists_page_with_a_link_header_in_creation_order(tenant: Tenant, case: Case) -> None:
    ids = [create(tenant, case)["id"] for _ in range(5)]
    seen: list[str] = []
    url: str | None = f"{case.path}?limit=2"
    pages = 0
    while url:
        response = tenant.get(url)
        assert response.status_code == 200, response.text
        items = response.json()
        assert 1 <= len(items) <= 2
        seen += [item["id"] for item in items]
        link = response.headers.get("link")
        match = NEXT_LINK.search(link) if link else None
        assert link is None or match, link
        url = match.group(1) if match else None
        pages += 1
        assert pages <= 3, seen
    assert seen == ids
    assert pages == 3
    assert [item["id"] for item in tenant.get(case.path).json()] == ids

    for limit in ("0", "101"):
        assert_problem(tenant.get(case.path, params={"limit": limit}), 400)
    assert_problem(tenant.get(case.path, params={"cursor": "forged!"}), 400)


def test_an_idempotency_key_replays_the_first_create(tenant: Tenant, case: Case) -> None:
    key = str(uuid.uuid4())
    body = case.new_body()
    first = tenant.post(case.path, json=body, headers={"Idempotency-Key": key})
    second = tenant.post(case.path, json=body, headers={"Idempotency-Key": key})
    assert first.status_code == second.status_code == 201, second.text
    assert second.json() == first.json()
    assert second.headers["location"] == first.headers["location"]
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    other = tenant.post(case.path, json=case.new_body(), headers={"Idempotency-Key": key})
    assert_problem(other, 422)
    assert [item["id"] for item in tenant.get(case.path).json()] == [first.json()["id"]]


def test_another_tenant_can_neither_see_nor_touch_an_item(
    tenant: Tenant, other_tenant: Tenant, case: Case
) -> None:
    created = create(tenant, case)
    path = item_path(case, created)
    assert_problem(other_tenant.get(path), 404)
    assert_problem(other_tenant.put(path, json=case.update), 404)
    assert_problem(other_tenant.patch(path, json=case.update), 404)
    assert_problem(other_tenant.delete(path), 404)
    listing = other_tenant.get(case.path)
    if case.nested:  # the parent product is not theirs either
        assert_problem(listing, 404)
        assert_problem(other_tenant.post(case.path, json=case.new_body()), 404)
    else:
        assert listing.status_code == 200 and listing.json() == []
    assert other_tenant.get("/audit", params={"entity_id": created["id"]}).json() == []
    assert tenant.get(path).json() == created
    assert len(audit_of(tenant, created["id"])) == 1


def test_a_read_only_token_can_read_but_not_write(tenant: Tenant, case: Case) -> None:
    created = create(tenant, case)
    path = item_path(case, created)
    read_only = {"Authorization": f"Bearer {tenant.token(scopes=['pim:read'])}"}
    assert_problem(tenant.post(case.path, json=case.new_body(), headers=read_only), 403)
    assert_problem(tenant.put(path, json=case.update, headers=read_only), 403)
    assert_problem(tenant.patch(path, json=case.update, headers=read_only), 403)
    assert_problem(tenant.delete(path, headers=read_only), 403)
    fetched = tenant.get(path, headers=read_only)
    assert fetched.status_code == 200 and fetched.json() == created
    listing = tenant.get(case.path, headers=read_only)
    assert listing.status_code == 200
    assert [item["id"] for item in listing.json()] == [created["id"]]
    assert len(audit_of(tenant, created["id"])) == 1


@pytest.mark.parametrize(
    ("factory", "taking_status"),
    [(variants, 409), (categories, 409), (brands, 409), (attributes, 422)],  # keys are immutable
    ids=["variants", "categories", "brands", "attributes"],
)
def test_a_unique_value_is_unique_per_tenant_and_freed_by_delete(
    tenant: Tenant,
    other_tenant: Tenant,
    factory: Callable[[Tenant], Case],
    case: Case,
    taking_status: int,
) -> None:
    assert case.unique is not None
    body = case.new_body()
    first = tenant.post(case.path, json=body).json()
    taken = tenant.post(case.path, json={**case.new_body(), case.unique: body[case.unique]})
    assert_problem(taken, 409)
    other = tenant.post(case.path, json=case.new_body()).json()
    clash = tenant.patch(item_path(case, other), json={case.unique: body[case.unique]})
    assert_problem(clash, taking_status)
    assert tenant.get(item_path(case, other)).json() == other

    theirs = factory(other_tenant)
    response = other_tenant.post(
        theirs.path, json={**theirs.new_body(), case.unique: body[case.unique]}
    )
    assert response.status_code == 201, response.text

    assert tenant.delete(item_path(case, first)).status_code == 204
    again = tenant.post(case.path, json={**case.new_body(), case.unique: body[case.unique]})
    assert again.status_code == 201, again.text


@pytest.mark.parametrize(
    "factory", [attribute_groups, templates, media], ids=["attribute_groups", "templates", "media"]
)
def test_an_item_cannot_reference_another_tenants_items(
    tenant: Tenant, other_tenant: Tenant, factory: Callable[[Tenant], Case], case: Case
) -> None:
    assert case.references
    body = case.new_body()  # names the tenant's own items
    theirs = factory(other_tenant)
    problem = assert_problem(other_tenant.post(theirs.path, json=body), 422)
    assert any(e["field"].startswith(case.references) for e in problem["errors"]), problem
    mine = other_tenant.post(theirs.path, json=theirs.new_body()).json()
    patch = {name: body[name] for name in case.references}
    problem = assert_problem(other_tenant.patch(item_path(theirs, mine), json=patch), 422)
    assert any(e["field"].startswith(case.references) for e in problem["errors"]), problem
    assert other_tenant.get(item_path(theirs, mine)).json() == mine
    assert tenant.get(case.path).json() == []


def test_a_variant_is_only_reachable_under_its_own_product(tenant: Tenant) -> None:
    case = variants(tenant)
    variant = create(tenant, case)
    elsewhere = f"/products/{tenant.create_product()['id']}/variants/{variant['id']}"
    assert_problem(tenant.get(elsewhere), 404)
    assert_problem(tenant.patch(elsewhere, json=case.update), 404)
    assert_problem(tenant.delete(elsewhere), 404)
    assert_problem(tenant.get(f"/products/{FORGED_ID}/variants"), 404)
    assert_problem(tenant.post(f"/products/{FORGED_ID}/variants", json=case.new_body()), 404)
    assert_problem(tenant.get(f"/products/not-a-uuid/variants/{variant['id']}"), 404)
    assert tenant.get(item_path(case, variant)).json() == variant


def test_deleting_a_product_deletes_its_variants_and_media(tenant: Tenant) -> None:
    product = tenant.create_product()
    variant = tenant.create(f"/products/{product['id']}/variants", sku=f"SKU-{unique()}")
    pictures = [
        tenant.create("/media", url="https://cdn.example.com/a.jpg", product_id=product["id"]),
        tenant.create(
            "/media",
            url="https://cdn.example.com/b.jpg",
            product_id=product["id"],
            variant_id=variant["id"],
        ),
    ]
    assert tenant.delete(f"/products/{product['id']}").status_code == 204
    assert_problem(tenant.get(f"/products/{product['id']}/variants/{variant['id']}"), 404)
    assert_problem(tenant.get(f"/products/{product['id']}/variants"), 404)
    for picture in pictures:
        assert_problem(tenant.get(f"/media/{picture['id']}"), 404)
    assert tenant.get("/media").json() == []
    assert tenant.get("/media", params={"product_id": product["id"]}).json() == []
    assert audit_of(tenant, variant["id"])[0]["action"] == "VARIANT_DELETED"
    for picture in pictures:
        assert audit_of(tenant, picture["id"])[0]["action"] == "MEDIA_DELETED"


def test_media_list_by_sort_order_then_creation_across_pages(tenant: Tenant) -> None:
    product = tenant.create_product()

    def picture(sort_order: int) -> str:
        url = f"https://cdn.example.com/{unique()}.jpg"
        created = tenant.create("/media", url=url, product_id=product["id"], sort_order=sort_order)
        return str(created["id"])

    five, zero_a, minus, zero_b, one = picture(5), picture(0), picture(-1), picture(0), picture(1)

    def listed(url: str) -> list[str]:
        seen: list[str] = []
        next_url: str | None = url
        while next_url:
            response = tenant.get(next_url)
            assert response.status_code == 200, response.text
            seen += [item["id"] for item in response.json()]
            match = NEXT_LINK.search(response.headers.get("link", ""))
            next_url = match.group(1) if match else None
        return seen

    assert listed("/media?limit=2") == [minus, zero_a, zero_b, one, five]
    assert listed(f"/media?limit=2&product_id={product['id']}") == [
        minus,
        zero_a,
        zero_b,
        one,
        five,
    ]
    assert tenant.patch(f"/media/{minus}", json={"sort_order": 9}).status_code == 200
    assert listed("/media?limit=3") == [zero_a, zero_b, one, five, minus]
