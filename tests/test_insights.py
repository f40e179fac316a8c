"""Stats and validation issues: exact per-tenant counts and a live issue list, both current the
moment a write has answered."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from tests.conftest import Tenant, assert_problem

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
NEXT_LINK = re.compile(r'<([^>]+)>; rel="next"')

ZERO_STATS = {
    "total_products": 0,
    "total_variants": 0,
    "total_brands": 0,
    "total_categories": 0,
    "total_attributes": 0,
    "total_attribute_groups": 0,
    "total_templates": 0,
    "total_media": 0,
    "products_by_status": {"ACTIVE": 0, "DRAFT": 0, "ARCHIVED": 0},
    "validation_issues": 0,
}


def stats(tenant: Tenant) -> dict[str, Any]:
    response = tenant.get("/stats")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def issues(tenant: Tenant, **params: str) -> list[dict[str, Any]]:
    response = tenant.get("/validation", params=params)
    assert response.status_code == 200, response.text
    body: list[dict[str, Any]] = response.json()
    return body


def codes_of(tenant: Tenant, product_id: str) -> list[tuple[str, str | None]]:
    """(code, variant_id) of a product's issues, sorted."""
    return sorted(
        (issue["code"], issue["variant_id"]) for issue in issues(tenant, product_id=product_id)
    )


def priced(sku: str, **fields: Any) -> dict[str, Any]:
    """A variant body with no problems of its own."""
    return {"sku": sku, "price": "10.00", "currency": "USD", **fields}


def sellable(tenant: Tenant, sku: str, **fields: Any) -> dict[str, Any]:
    """A product with one clean variant, so only the issue under test can show up."""
    return tenant.create_product(variants=[priced(sku)], **fields)


# -- stats --------------------------------------------------------------------------------


def test_stats_of_a_new_tenant_are_all_zero(tenant: Tenant) -> None:
    assert stats(tenant) == ZERO_STATS


def test_stats_count_every_resource_exactly_and_follow_updates_and_deletes(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    acme = tenant.create("/brands", name="Acme")
    tenant.create("/brands", name="Globex")
    shoes = tenant.category("shoes")
    tenant.category("hats")
    size = tenant.attribute("size")
    tenant.attribute("color")
    material = tenant.attribute("material")
    group = tenant.create(
        "/attribute-groups", name="Sizing", key="sizing", attribute_ids=[size["id"]]
    )
    template = tenant.create("/templates", name="Shoe", attribute_ids=[size["id"]])
    active = tenant.create_product(
        title="Runner",
        brand_id=acme["id"],
        category="shoes",
        variants=[priced("RUN-1"), priced("RUN-2")],
    )
    draft = tenant.create_product(title="Sketch", status="DRAFT")
    tenant.create_product(title="Old", status="ARCHIVED", variants=[priced("OLD-1")])
    other_draft = tenant.create_product(title="Idea", status="DRAFT")
    variant = tenant.create(f"/products/{draft['id']}/variants", **priced("SK-1"))
    tenant.create("/media", url="https://cdn.example.com/1.jpg", product_id=active["id"])
    tenant.create("/media", url="https://cdn.example.com/2.jpg", product_id=active["id"])
    tenant.create("/media", url="https://cdn.example.com/3.jpg", variant_id=variant["id"])

    assert stats(tenant) == {
        "total_products": 4,
        "total_variants": 4,
        "total_brands": 2,
        "total_categories": 2,
        "total_attributes": 3,
        "total_attribute_groups": 1,
        "total_templates": 1,
        "total_media": 3,
        "products_by_status": {"ACTIVE": 1, "DRAFT": 2, "ARCHIVED": 1},
        "validation_issues": 1,  # "Idea" has no variants
    }

    # A status change moves the product between counters; a no-op changes nothing.
    tenant.patch(f"/products/{active['id']}", json={"status": "ARCHIVED"})
    tenant.patch(f"/products/{other_draft['id']}", json={"status": "ACTIVE"})
    tenant.patch(f"/products/{other_draft['id']}", json={"status": "ACTIVE"})
    # Deleting a product deletes its variant and that variant's media as well.
    assert tenant.delete(f"/products/{draft['id']}").status_code == 204
    for path in (
        f"/brands/{acme['id']}",
        f"/attributes/{material['id']}",
        f"/attribute-groups/{group['id']}",
        f"/templates/{template['id']}",
    ):
        assert tenant.delete(path).status_code == 204, path
    # The category still has a product pointing at it: allowed, and reported.
    assert tenant.delete(f"/categories/{shoes['id']}").status_code == 204

    assert stats(tenant) == {
        "total_products": 3,
        "total_variants": 3,
        "total_brands": 1,
        "total_categories": 1,
        "total_attributes": 2,
        "total_attribute_groups": 0,
        "total_templates": 0,
        "total_media": 2,
        "products_by_status": {"ACTIVE": 1, "DRAFT": 0, "ARCHIVED": 2},
        "validation_issues": 2,  # "Idea" has no variants; "Runner" lost its category
    }
    assert stats(other_tenant) == ZERO_STATS


def test_stats_are_isolated_per_tenant(tenant: Tenant, other_tenant: Tenant) -> None:
    tenant.create_product(title="Mine", status="DRAFT")
    other_tenant.create_product(title="Theirs", variants=[priced("T-1"), priced("T-2")])
    other_tenant.category("theirs")
    mine, theirs = stats(tenant), stats(other_tenant)
    assert mine["total_products"] == 1 and mine["total_variants"] == 0
    assert mine["total_categories"] == 0
    assert mine["products_by_status"] == {"ACTIVE": 0, "DRAFT": 1, "ARCHIVED": 0}
    assert mine["validation_issues"] == 1
    assert theirs["total_products"] == 1 and theirs["total_variants"] == 2
    assert theirs["total_categories"] == 1
    assert theirs["products_by_status"] == {"ACTIVE": 1, "DRAFT": 0, "ARCHIVED": 0}
    assert theirs["validation_issues"] == 0


def test_stats_reflect_a_write_the_moment_its_response_has_arrived(tenant: Tenant) -> None:
    # Another client of the same tenant reads: read-your-writes holds for every client.
    reader = Tenant(tenant.base_url, tenant_id=tenant.tenant_id, org_id=tenant.org_id)
    ids = []
    for i in range(1, 9):
        ids.append(tenant.create_product(title=f"P{i}", status="DRAFT")["id"])
        now = stats(reader)
        assert now["total_products"] == i
        assert now["products_by_status"]["DRAFT"] == i
        assert now["validation_issues"] == i
    for i, product_id in enumerate(ids, start=1):
        tenant.patch(f"/products/{product_id}", json={"status": "ACTIVE"})
        assert stats(reader)["products_by_status"] == {"ACTIVE": i, "DRAFT": 8 - i, "ARCHIVED": 0}
        tenant.post(f"/products/{product_id}/variants", json=priced(f"RYW-{i}"))
        assert stats(reader)["validation_issues"] == 8 - i
        assert issues(reader, product_id=product_id) == []


# -- validation issues, code by code ------------------------------------------------------


def assert_issue_shape(issue: dict[str, Any], product_id: str, code: str, severity: str) -> None:
    assert set(issue) == {
        "id",
        "product_id",
        "variant_id",
        "code",
        "severity",
        "message",
        "attribute_key",
        "detected_at",
    }
    uuid.UUID(issue["id"])
    assert issue["product_id"] == product_id
    assert issue["code"] == code
    assert issue["severity"] == severity
    assert RFC3339_UTC.match(issue["detected_at"]), issue
    # A human sentence: capitalised, several words, ends with a full stop.
    message = issue["message"]
    assert message[0].isupper() and message.endswith(".") and len(message.split()) >= 4, message


def test_no_variants_appears_and_disappears_with_the_product_s_variants(tenant: Tenant) -> None:
    product = tenant.create_product(title="Lonely")
    [issue] = issues(tenant)
    assert_issue_shape(issue, product["id"], "NO_VARIANTS", "WARNING")
    assert issue["variant_id"] is None and issue["attribute_key"] is None
    variant = tenant.create(f"/products/{product['id']}/variants", **priced("NV-1"))
    assert issues(tenant) == []
    assert stats(tenant)["validation_issues"] == 0
    path = f"/products/{product['id']}/variants/{variant['id']}"
    assert tenant.delete(path).status_code == 204
    assert codes_of(tenant, product["id"]) == [("NO_VARIANTS", None)]
    assert stats(tenant)["validation_issues"] == 1


def test_a_product_created_with_variants_never_has_no_variants(tenant: Tenant) -> None:
    product = sellable(tenant, "WITH-1")
    assert codes_of(tenant, product["id"]) == []


def test_missing_price_is_fixed_by_setting_price_and_currency(tenant: Tenant) -> None:
    product = tenant.create_product()
    variant = tenant.create(f"/products/{product['id']}/variants", sku="MP-1")
    [issue] = issues(tenant)
    assert_issue_shape(issue, product["id"], "MISSING_PRICE", "WARNING")
    assert issue["variant_id"] == variant["id"]
    path = f"/products/{product['id']}/variants/{variant['id']}"
    fixed = tenant.patch(path, json={"price": "19.99", "currency": "EUR"})
    assert fixed.status_code == 200, fixed.text
    assert issues(tenant) == []
    tenant.patch(path, json={"price": None})
    assert codes_of(tenant, product["id"]) == [("MISSING_PRICE", variant["id"])]


@pytest.mark.parametrize("sku", ["bad sku", "-leading-dash", "a/b", "ünï"])
def test_a_sku_outside_the_convention_is_accepted_and_reported_until_renamed(
    tenant: Tenant, sku: str
) -> None:
    product = tenant.create_product()
    response = tenant.post(f"/products/{product['id']}/variants", json=priced(sku))
    assert response.status_code == 201, response.text
    variant = response.json()
    assert variant["sku"] == sku
    [issue] = issues(tenant)
    assert_issue_shape(issue, product["id"], "INVALID_SKU", "ERROR")
    assert issue["variant_id"] == variant["id"]
    renamed = tenant.patch(
        f"/products/{product['id']}/variants/{variant['id']}", json={"sku": "GOOD-1"}
    )
    assert renamed.status_code == 200, renamed.text
    assert issues(tenant) == []


def test_an_invalid_barcode_is_accepted_and_reported_until_corrected(tenant: Tenant) -> None:
    product = tenant.create_product()
    response = tenant.post(
        f"/products/{product['id']}/variants", json=priced("BC-1", barcode="4006381333932")
    )
    assert response.status_code == 201, response.text
    variant = response.json()
    [issue] = issues(tenant)
    assert_issue_shape(issue, product["id"], "INVALID_BARCODE", "ERROR")
    assert issue["variant_id"] == variant["id"]
    path = f"/products/{product['id']}/variants/{variant['id']}"
    assert tenant.patch(path, json={"barcode": "4006381333931"}).status_code == 200
    assert issues(tenant) == []
    tenant.patch(path, json={"barcode": "12345"})
    assert codes_of(tenant, product["id"]) == [("INVALID_BARCODE", variant["id"])]
    tenant.patch(path, json={"barcode": None})  # no barcode is fine
    assert issues(tenant) == []


@pytest.mark.parametrize("barcode", ["96385074", "036000291452", "4006381333931", "10614141000415"])
def test_valid_gtin_8_12_13_and_14_barcodes_raise_no_issue(tenant: Tenant, barcode: str) -> None:
    product = sellable(tenant, "PLAIN-1")
    tenant.create(f"/products/{product['id']}/variants", **priced("GTIN-1", barcode=barcode))
    assert issues(tenant) == []


def test_a_deleted_category_is_reported_on_its_products_until_its_slug_exists_again(
    tenant: Tenant,
) -> None:
    shoes = tenant.category("shoes")
    product = sellable(tenant, "UC-1", category="shoes")
    bystander = sellable(tenant, "UC-2")
    assert issues(tenant) == []
    assert tenant.delete(f"/categories/{shoes['id']}").status_code == 204
    [issue] = issues(tenant)
    assert_issue_shape(issue, product["id"], "UNKNOWN_CATEGORY", "ERROR")
    assert issue["variant_id"] is None
    assert "shoes" in issue["message"]
    assert codes_of(tenant, bystander["id"]) == []
    tenant.category("shoes")
    assert issues(tenant) == []
    # Renaming the category's slug leaves the product pointing at a slug that is gone.
    again = tenant.get("/categories").json()[0]
    tenant.patch(f"/categories/{again['id']}", json={"slug": "footwear"})
    assert codes_of(tenant, product["id"]) == [("UNKNOWN_CATEGORY", None)]
    # Pointing the product elsewhere fixes it too.
    tenant.patch(f"/products/{product['id']}", json={"category": "footwear"})
    assert issues(tenant) == []


def test_a_missing_required_attribute_is_reported_until_the_value_is_set(tenant: Tenant) -> None:
    size = tenant.attribute("size")
    template = tenant.create(
        "/templates",
        name="Shoe",
        attribute_ids=[size["id"]],
        required_attribute_ids=[size["id"]],
    )
    product = sellable(tenant, "RA-1", template_id=template["id"])
    [issue] = issues(tenant)
    assert_issue_shape(issue, product["id"], "MISSING_REQUIRED_ATTRIBUTE", "ERROR")
    assert issue["attribute_key"] == "size"
    assert issue["variant_id"] is None
    assert "size" in issue["message"]
    tenant.patch(f"/products/{product['id']}", json={"attributes": {"size": "42"}})
    assert issues(tenant) == []
    tenant.patch(f"/products/{product['id']}", json={"attributes": {"size": None}})
    assert codes_of(tenant, product["id"]) == [("MISSING_REQUIRED_ATTRIBUTE", None)]
    # Leaving the template removes its requirements.
    tenant.patch(f"/products/{product['id']}", json={"template_id": None})
    assert issues(tenant) == []
    # A product created with the value has no issue at all.
    sellable(tenant, "RA-2", template_id=template["id"], attributes={"size": "40"})
    assert issues(tenant) == []


def test_changing_a_template_re_evaluates_every_product_that_uses_it(tenant: Tenant) -> None:
    size = tenant.attribute("size")
    color = tenant.attribute("color")
    template = tenant.create(
        "/templates",
        name="Shoe",
        attribute_ids=[size["id"], color["id"]],
        required_attribute_ids=[size["id"]],
    )
    tpath = f"/templates/{template['id']}"
    p1 = sellable(tenant, "T-1", template_id=template["id"], attributes={"size": "42"})
    p2 = sellable(tenant, "T-2", template_id=template["id"])
    p3 = sellable(tenant, "T-3", template_id=template["id"], attributes={"color": "red"})
    untouched = sellable(tenant, "T-4")

    def missing() -> set[tuple[str, str]]:
        found = issues(tenant, code="MISSING_REQUIRED_ATTRIBUTE")
        assert len(issues(tenant)) == len(found) == stats(tenant)["validation_issues"]
        return {(i["product_id"], i["attribute_key"]) for i in found}

    assert missing() == {(p2["id"], "size"), (p3["id"], "size")}

    changed = tenant.patch(tpath, json={"required_attribute_ids": [size["id"], color["id"]]})
    assert changed.status_code == 200, changed.text
    assert missing() == {
        (p1["id"], "color"),
        (p2["id"], "size"),
        (p2["id"], "color"),
        (p3["id"], "size"),
    }

    tenant.patch(tpath, json={"required_attribute_ids": []})
    assert missing() == set()

    tenant.patch(tpath, json={"required_attribute_ids": [color["id"]]})
    assert missing() == {(p1["id"], "color"), (p2["id"], "color")}
    assert codes_of(tenant, untouched["id"]) == []

    # Without the template there is nothing left to require.
    assert tenant.delete(tpath).status_code == 204
    assert missing() == set()


def test_an_issue_keeps_its_identity_and_detected_at_across_unrelated_edits(
    tenant: Tenant,
) -> None:
    product = tenant.create_product(title="Lonely")
    [before] = issues(tenant)
    tenant.patch(f"/products/{product['id']}", json={"title": "Still lonely", "status": "DRAFT"})
    tenant.create_product(title="Neighbour", variants=[priced("N-1")])
    assert issues(tenant) == [before]


# -- the list: counts, filters, paging, deletion, isolation -------------------------------


def make_one_issue_of_each_kind(tenant: Tenant) -> dict[str, str]:
    """Six products, each with exactly one issue; returns code -> product id."""
    size = tenant.attribute("size")
    template = tenant.create(
        "/templates", name="T", attribute_ids=[size["id"]], required_attribute_ids=[size["id"]]
    )
    doomed = tenant.category("doomed")
    made = {
        "NO_VARIANTS": tenant.create_product(title="No variants")["id"],
        "MISSING_PRICE": tenant.create_product(variants=[{"sku": "NOPRICE-1"}])["id"],
        "INVALID_SKU": tenant.create_product(variants=[priced("bad sku")])["id"],
        "INVALID_BARCODE": tenant.create_product(
            variants=[priced("BAR-1", barcode="4006381333932")]
        )["id"],
        "UNKNOWN_CATEGORY": sellable(tenant, "CAT-1", category="doomed")["id"],
        "MISSING_REQUIRED_ATTRIBUTE": sellable(tenant, "REQ-1", template_id=template["id"])["id"],
    }
    assert tenant.delete(f"/categories/{doomed['id']}").status_code == 204
    return made


SEVERITIES = {
    "MISSING_REQUIRED_ATTRIBUTE": "ERROR",
    "INVALID_SKU": "ERROR",
    "INVALID_BARCODE": "ERROR",
    "UNKNOWN_CATEGORY": "ERROR",
    "MISSING_PRICE": "WARNING",
    "NO_VARIANTS": "WARNING",
}


def test_every_code_has_its_severity_and_stats_count_exactly_the_listed_issues(
    tenant: Tenant,
) -> None:
    made = make_one_issue_of_each_kind(tenant)
    listed = issues(tenant)
    assert {i["code"]: i["product_id"] for i in listed} == made
    assert len(listed) == 6
    for issue in listed:
        assert_issue_shape(issue, made[issue["code"]], issue["code"], SEVERITIES[issue["code"]])
    assert stats(tenant)["validation_issues"] == 6
    assert len({i["id"] for i in listed}) == 6


def test_issue_filters_work_and_combine(tenant: Tenant) -> None:
    made = make_one_issue_of_each_kind(tenant)
    variant_issue = issues(tenant, code="MISSING_PRICE")[0]

    def found(**params: str) -> set[str]:
        return {i["code"] for i in issues(tenant, **params)}

    assert found(severity="ERROR") == {c for c, s in SEVERITIES.items() if s == "ERROR"}
    assert found(severity="WARNING") == {"MISSING_PRICE", "NO_VARIANTS"}
    for code, product_id in made.items():
        assert found(code=code) == {code}
        assert found(product_id=product_id) == {code}
        assert found(product_id=product_id, code=code) == {code}
        assert found(product_id=product_id, severity=SEVERITIES[code]) == {code}
        other = "WARNING" if SEVERITIES[code] == "ERROR" else "ERROR"
        assert found(product_id=product_id, severity=other) == set()
    assert found(code="INVALID_SKU", severity="WARNING") == set()
    assert found(product_id=made["NO_VARIANTS"], code="INVALID_SKU") == set()
    assert found(variant_id=variant_issue["variant_id"]) == {"MISSING_PRICE"}
    assert found(product_id=str(uuid.uuid4())) == set()
    assert found(variant_id=str(uuid.uuid4())) == set()


@pytest.mark.parametrize(
    "params",
    [
        {"code": "NOPE"},
        {"code": "missing_price"},
        {"severity": "info"},
        {"severity": "error"},
        {"product_id": "x"},
        {"variant_id": "42"},
        {"limit": "0"},
        {"limit": "101"},
        {"cursor": "garbage!"},
    ],
)
def test_bad_issue_filters_are_400(tenant: Tenant, params: dict[str, str]) -> None:
    assert_problem(tenant.get("/validation", params=params), 400)


def test_issues_page_with_a_cursor_and_link_like_every_list(tenant: Tenant) -> None:
    for i in range(5):
        tenant.create_product(title=f"P{i}", variants=[{"sku": f"PG-{i}"}])  # MISSING_PRICE
        tenant.create_product(title=f"Q{i}")  # NO_VARIANTS
    everything = [i["id"] for i in issues(tenant)]
    assert len(everything) == 10
    seen: list[str] = []
    url: str | None = "/validation?limit=3"
    pages = 0
    while url:
        response = tenant.get(url)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page) <= 3
        seen += [i["id"] for i in page]
        link = response.headers.get("link")
        match = NEXT_LINK.match(link) if link else None
        url = match.group(1) if match else None
        pages += 1
    assert seen == everything
    assert pages == 4
    # The filter stays on every page.
    warnings: list[str] = []
    url = "/validation?limit=2&code=NO_VARIANTS"
    while url:
        response = tenant.get(url)
        warnings += [i["code"] for i in response.json()]
        link = response.headers.get("link")
        match = NEXT_LINK.match(link) if link else None
        url = match.group(1) if match else None
    assert warnings == ["NO_VARIANTS"] * 5


def test_deleting_a_product_removes_all_its_issues(tenant: Tenant) -> None:
    product = tenant.create_product(
        variants=[{"sku": "bad sku", "barcode": "4006381333932"}, {"sku": "NOPRICE-2"}]
    )
    keeper = tenant.create_product(title="Keeper")
    assert len(issues(tenant, product_id=product["id"])) == 4
    assert stats(tenant)["validation_issues"] == 5
    assert tenant.delete(f"/products/{product['id']}").status_code == 204
    assert [i["product_id"] for i in issues(tenant)] == [keeper["id"]]
    assert stats(tenant)["validation_issues"] == 1


def test_a_tenant_never_sees_another_tenants_issues(tenant: Tenant, other_tenant: Tenant) -> None:
    made = make_one_issue_of_each_kind(tenant)
    assert issues(other_tenant) == []
    assert issues(other_tenant, product_id=made["NO_VARIANTS"]) == []
    assert issues(other_tenant, code="INVALID_SKU") == []
    assert stats(other_tenant)["validation_issues"] == 0
    # The same sku is free in the other tenant, and its issue is its own.
    theirs = other_tenant.create_product(variants=[priced("bad sku")])
    [issue] = issues(other_tenant)
    assert issue["product_id"] == theirs["id"] and issue["code"] == "INVALID_SKU"
    assert len(issues(tenant)) == 6
