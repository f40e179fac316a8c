"""The catalog model's own rules: variants, categories, brands, attributes, templates, media,
typed product values, uniqueness, cascades and cross-tenant references."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.conftest import Tenant, assert_problem

# -- variants -----------------------------------------------------------------------------


def test_a_variant_is_created_under_its_product(tenant: Tenant) -> None:
    product = tenant.create_product()
    response = tenant.post(
        f"/products/{product['id']}/variants",
        json={
            "sku": "TS-42-RED",
            "barcode": "4006381333931",
            "price": 89.99,
            "currency": "USD",
            "option_values": {"size": "42", "color": "red"},
        },
    )
    assert response.status_code == 201, response.text
    variant = response.json()
    assert variant["product_id"] == product["id"]
    assert variant["price"] == "89.99"
    assert variant["currency"] == "USD"
    assert variant["option_values"] == {"size": "42", "color": "red"}
    assert response.headers["location"].endswith(
        f"/api/v1/pim/products/{product['id']}/variants/{variant['id']}"
    )
    listed = tenant.get(f"/products/{product['id']}/variants").json()
    assert [v["id"] for v in listed] == [variant["id"]]


def test_variant_count_is_derived_and_does_not_bump_the_product_version(tenant: Tenant) -> None:
    product = tenant.create_product()
    path = f"/products/{product['id']}"
    first = tenant.create(f"{path}/variants", sku="A-1")
    tenant.create(f"{path}/variants", sku="A-2")
    fetched = tenant.get(path)
    assert fetched.json()["variant_count"] == 2
    assert fetched.json()["version"] == 1
    assert fetched.headers["etag"] == '"1"'
    assert tenant.delete(f"{path}/variants/{first['id']}").status_code == 204
    assert tenant.get(path).json()["variant_count"] == 1


@pytest.mark.parametrize(
    ("price", "currency", "expected"),
    [
        (89.99, "USD", "89.99"),
        ("89.9", "USD", "89.90"),
        (1000, "JPY", "1000"),
        ("1.234", "KWD", "1.234"),
        ("0", "EUR", "0.00"),
        (0.5, "USD", "0.50"),
    ],
)
def test_prices_are_exact_decimals_in_the_currencys_minor_units(
    tenant: Tenant, price: object, currency: str, expected: str
) -> None:
    product = tenant.create_product()
    variant = tenant.create(
        f"/products/{product['id']}/variants",
        sku=f"S-{uuid.uuid4()}",
        price=price,
        currency=currency,
    )
    assert variant["price"] == expected


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"sku": "X", "price": "100.5", "currency": "JPY"}, "price"),
        ({"sku": "X", "price": "1.001", "currency": "USD"}, "price"),
        ({"sku": "X", "price": -1, "currency": "USD"}, "price"),
        ({"sku": "X", "price": "ten", "currency": "USD"}, "price"),
        ({"sku": "X", "price": True, "currency": "USD"}, "price"),
        ({"sku": "X", "price": "10.00"}, "currency"),
        ({"sku": "X", "price": "10", "currency": "usd"}, "currency"),
        ({"sku": "X", "price": "10", "currency": "ZZZ"}, "currency"),
        ({"sku": "X", "currency": "XAU", "price": "1"}, "currency"),
        ({}, "sku"),
        ({"sku": ""}, "sku"),
        ({"sku": " X"}, "sku"),
        ({"sku": "X "}, "sku"),
        ({"sku": "A\u0007B"}, "sku"),
        ({"sku": "x" * 65}, "sku"),
        ({"sku": 12}, "sku"),
        ({"sku": "X", "barcode": "1" * 33}, "barcode"),
        ({"sku": "X", "option_values": ["red"]}, "option_values"),
        ({"sku": "X", "option_values": {"size": {"eu": 42}}}, "option_values.size"),
        ({"sku": "X", "colour": "red"}, "colour"),
    ],
)
def test_bad_variant_fields_are_422_naming_the_field(
    tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    product = tenant.create_product()
    response = tenant.post(f"/products/{product['id']}/variants", json=body)
    problem = assert_problem(response, 422, field)
    # one error per mistake: an invalid currency is not also reported as a missing one
    assert len(problem["errors"]) == 1, problem
    assert tenant.get(f"/products/{product['id']}/variants").json() == []


def test_an_empty_barcode_is_no_barcode(tenant: Tenant) -> None:
    product = tenant.create_product()
    variant = tenant.create(f"/products/{product['id']}/variants", sku="EMPTY-BC", barcode="")
    assert variant["barcode"] is None


def test_unconventional_skus_and_invalid_barcodes_are_accepted(tenant: Tenant) -> None:
    # Reported as INVALID_SKU / INVALID_BARCODE validation issues, not rejected.
    product = tenant.create_product()
    variant = tenant.create(
        f"/products/{product['id']}/variants", sku="sku with spaces/ü", barcode="4006381333932"
    )
    assert variant["sku"] == "sku with spaces/ü"
    assert variant["barcode"] == "4006381333932"


def test_skus_are_unique_per_tenant_case_sensitive_and_freed_by_delete(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    first = tenant.create_product()
    second = tenant.create_product()
    variant = tenant.create(f"/products/{first['id']}/variants", sku="UNIQ-1")
    taken = assert_problem(
        tenant.post(f"/products/{second['id']}/variants", json={"sku": "UNIQ-1"}), 409
    )
    assert [(e["field"], e["code"]) for e in taken["errors"]] == [("sku", "conflict")]
    tenant.create(f"/products/{second['id']}/variants", sku="uniq-1")  # case matters
    theirs = other_tenant.create_product()
    other_tenant.create(f"/products/{theirs['id']}/variants", sku="UNIQ-1")  # other tenant
    tenant.delete(f"/products/{first['id']}/variants/{variant['id']}")
    tenant.create(f"/products/{second['id']}/variants", sku="UNIQ-1")  # freed


def test_renaming_a_sku_frees_the_old_one(tenant: Tenant) -> None:
    product = tenant.create_product()
    variant = tenant.create(f"/products/{product['id']}/variants", sku="OLD")
    tenant.patch(f"/products/{product['id']}/variants/{variant['id']}", json={"sku": "NEW"})
    tenant.create(f"/products/{product['id']}/variants", sku="OLD")
    assert_problem(tenant.post(f"/products/{product['id']}/variants", json={"sku": "NEW"}), 409)


def test_option_values_are_unique_within_a_product(tenant: Tenant) -> None:
    product = tenant.create_product()
    other = tenant.create_product()
    base = f"/products/{product['id']}/variants"
    tenant.create(base, sku="M-RED", option_values={"size": "M", "color": "red"})
    response = tenant.post(
        base, json={"sku": "M-RED-2", "option_values": {"color": "red", "size": "M"}}
    )
    assert_problem(response, 409)
    tenant.create(base, sku="L-RED", option_values={"size": "L", "color": "red"})
    tenant.create(
        f"/products/{other['id']}/variants",
        sku="O-M-RED",
        option_values={"size": "M", "color": "red"},
    )


def test_variant_updates_merge_option_values(tenant: Tenant) -> None:
    product = tenant.create_product()
    variant = tenant.create(
        f"/products/{product['id']}/variants",
        sku="MV",
        option_values={"size": "M", "color": "red"},
        price="10",
        currency="EUR",
    )
    path = f"/products/{product['id']}/variants/{variant['id']}"
    updated = tenant.patch(
        path, json={"option_values": {"color": None, "fit": "slim"}, "price": "12.5"}
    ).json()
    assert updated["option_values"] == {"size": "M", "fit": "slim"}
    assert updated["price"] == "12.50"
    assert updated["version"] == 2
    assert_problem(tenant.patch(path, json={"currency": "JPY", "price": "12.5"}), 422, "price")
    cleared = tenant.patch(path, json={"price": None, "currency": None}).json()
    assert cleared["price"] is None and cleared["currency"] is None


def test_a_variant_is_only_reachable_through_its_own_product(tenant: Tenant) -> None:
    a = tenant.create_product()
    b = tenant.create_product()
    variant = tenant.create(f"/products/{a['id']}/variants", sku="ONLY-A")
    wrong = f"/products/{b['id']}/variants/{variant['id']}"
    assert_problem(tenant.get(wrong), 404)
    assert_problem(tenant.patch(wrong, json={"sku": "X"}), 404)
    assert_problem(tenant.delete(wrong), 404)
    assert_problem(tenant.post(f"/products/{uuid.uuid4()}/variants", json={"sku": "Z"}), 404)
    assert_problem(tenant.get(f"/products/{uuid.uuid4()}/variants"), 404)


def test_variants_nested_in_a_product_create_are_atomic(tenant: Tenant) -> None:
    response = tenant.post(
        "/products",
        json={
            "title": "Tee",
            "variants": [
                {"sku": "TEE-S", "price": "9.99", "currency": "USD"},
                {"sku": "TEE-M", "option_values": {"size": "M"}},
            ],
        },
    )
    assert response.status_code == 201, response.text
    product = response.json()
    assert product["variant_count"] == 2
    skus = [v["sku"] for v in tenant.get(f"/products/{product['id']}/variants").json()]
    assert skus == ["TEE-S", "TEE-M"]

    bad = tenant.post(
        "/products",
        json={
            "title": "Broken",
            "variants": [{"sku": "OK-1"}, {"sku": " bad"}],
        },
    )
    assert_problem(bad, 422, "variants[1].sku")
    typed = tenant.post("/products", json={"title": "Broken", "variants": [{"sku": 5}]})
    assert_problem(typed, 422, "variants[0].sku")
    taken = tenant.post("/products", json={"title": "Dup", "variants": [{"sku": "TEE-S"}]})
    assert_problem(taken, 409)
    twice = tenant.post(
        "/products", json={"title": "Dup", "variants": [{"sku": "Z1"}, {"sku": "Z1"}]}
    )
    assert_problem(twice, 409)
    assert [p["title"] for p in tenant.get("/products").json()] == ["Tee"]
    # The rejected skus were never claimed.
    tenant.create(f"/products/{product['id']}/variants", sku="OK-1")


def test_variants_cannot_be_sent_when_updating_a_product(tenant: Tenant) -> None:
    product = tenant.create_product()
    response = tenant.patch(f"/products/{product['id']}", json={"variants": [{"sku": "x"}]})
    assert_problem(response, 422, "variants")


# -- categories ---------------------------------------------------------------------------


def test_categories_form_a_tree_with_unique_slugs(tenant: Tenant) -> None:
    root = tenant.create("/categories", name="Men's Shoes")
    assert root["slug"] == "men-s-shoes"  # derived from the name
    child = tenant.create("/categories", name="Trail", slug="trail", parent_id=root["id"])
    assert child["parent_id"] == root["id"]
    assert_problem(tenant.post("/categories", json={"name": "Again", "slug": "trail"}), 409)
    assert_problem(tenant.post("/categories", json={"name": "X", "slug": "Bad Slug"}), 422, "slug")
    assert_problem(
        tenant.post("/categories", json={"name": "X", "parent_id": str(uuid.uuid4())}),
        422,
        "parent_id",
    )
    assert_problem(tenant.post("/categories", json={"slug": "no-name"}), 422, "name")
    listed = tenant.get("/categories", params={"parent_id": root["id"]}).json()
    assert [c["id"] for c in listed] == [child["id"]]


def test_a_move_that_would_make_a_cycle_is_422(tenant: Tenant) -> None:
    a = tenant.create("/categories", name="A", slug="a")
    b = tenant.create("/categories", name="B", slug="b", parent_id=a["id"])
    c = tenant.create("/categories", name="C", slug="c", parent_id=b["id"])
    assert_problem(
        tenant.patch(f"/categories/{a['id']}", json={"parent_id": c["id"]}), 422, "parent_id"
    )
    assert_problem(
        tenant.patch(f"/categories/{a['id']}", json={"parent_id": a["id"]}), 422, "parent_id"
    )
    moved = tenant.patch(f"/categories/{c['id']}", json={"parent_id": a["id"]})
    assert moved.status_code == 200 and moved.json()["parent_id"] == a["id"]


def test_a_category_with_children_cannot_be_deleted(tenant: Tenant) -> None:
    parent = tenant.create("/categories", name="Parent", slug="parent")
    child = tenant.create("/categories", name="Child", slug="child", parent_id=parent["id"])
    assert_problem(tenant.delete(f"/categories/{parent['id']}"), 409)
    assert tenant.delete(f"/categories/{child['id']}").status_code == 204
    assert tenant.delete(f"/categories/{parent['id']}").status_code == 204
    tenant.create("/categories", name="Parent again", slug="parent")  # slug freed


def test_products_must_name_an_existing_category_slug(tenant: Tenant) -> None:
    assert_problem(
        tenant.post("/products", json={"title": "x", "category": "nope"}), 422, "category"
    )
    category = tenant.category("lamps")
    product = tenant.create_product(category="lamps")
    tenant.delete(f"/categories/{category['id']}")
    assert_problem(
        tenant.post("/products", json={"title": "x", "category": "lamps"}), 422, "category"
    )
    # The product keeps its (now dangling) category: reported as a validation issue instead.
    kept = tenant.patch(f"/products/{product['id']}", json={"title": "Lamp 2"})
    assert kept.status_code == 200 and kept.json()["category"] == "lamps"


# -- brands, attributes, groups, templates -------------------------------------------------


def test_brand_names_are_unique_per_tenant_ignoring_case(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    tenant.create("/brands", name="Acme", logo_url="https://cdn.example.com/acme.png")
    assert_problem(tenant.post("/brands", json={"name": "ACME"}), 409)
    other_tenant.create("/brands", name="Acme")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x.example/logo.png",
        "javascript:alert(1)",
        "//cdn.example.com/x.png",
        "not a url",
        "http://",
    ],
)
def test_brand_logos_must_be_http_urls(tenant: Tenant, url: str) -> None:
    assert_problem(
        tenant.post("/brands", json={"name": f"B {uuid.uuid4()}", "logo_url": url}), 422, "logo_url"
    )


def test_attribute_definitions(tenant: Tenant) -> None:
    text = tenant.create("/attributes", name="Material", key="material")
    assert text["type"] == "TEXT" and text["options"] is None
    assert_problem(tenant.post("/attributes", json={"name": "Again", "key": "material"}), 409)
    assert_problem(tenant.post("/attributes", json={"name": "X", "key": "Bad-Key"}), 422, "key")
    assert_problem(
        tenant.post("/attributes", json={"name": "X", "key": "s", "type": "SELECT"}), 422, "options"
    )
    assert_problem(
        tenant.post("/attributes", json={"name": "X", "key": "s", "type": "SELECT", "options": []}),
        422,
        "options",
    )
    assert_problem(
        tenant.post("/attributes", json={"name": "X", "key": "t", "options": ["a"]}), 422, "options"
    )
    assert_problem(
        tenant.post("/attributes", json={"name": "X", "key": "u", "type": "DATE"}), 422, "type"
    )
    assert_problem(tenant.patch(f"/attributes/{text['id']}", json={"type": "NUMBER"}), 422, "type")
    assert_problem(tenant.patch(f"/attributes/{text['id']}", json={"key": "other"}), 422, "key")


def test_product_attribute_values_are_typed_by_their_definitions(tenant: Tenant) -> None:
    tenant.attribute("material")
    tenant.attribute("weight_kg", "NUMBER")
    tenant.attribute("waterproof", "BOOLEAN")
    tenant.attribute("fit", "SELECT", options=["slim", "regular"])
    good = tenant.create_product(
        attributes={"material": "wool", "weight_kg": 0.4, "waterproof": False, "fit": "slim"}
    )
    assert good["attributes"]["fit"] == "slim"
    for attributes, field in [
        ({"colour": "red"}, "attributes.colour"),
        ({"material": 5}, "attributes.material"),
        ({"weight_kg": "heavy"}, "attributes.weight_kg"),
        ({"weight_kg": True}, "attributes.weight_kg"),
        ({"waterproof": "yes"}, "attributes.waterproof"),
        ({"fit": "baggy"}, "attributes.fit"),
    ]:
        assert_problem(
            tenant.post("/products", json={"title": "x", "attributes": attributes}), 422, field
        )
        assert_problem(
            tenant.patch(f"/products/{good['id']}", json={"attributes": attributes}), 422, field
        )


def test_templates_and_groups_reference_existing_attributes(tenant: Tenant) -> None:
    size = tenant.attribute("size")
    color = tenant.attribute("color")
    template = tenant.create(
        "/templates",
        name="Shoe",
        attribute_ids=[size["id"], color["id"]],
        required_attribute_ids=[size["id"]],
    )
    assert template["required_attribute_ids"] == [size["id"]]
    ghost = str(uuid.uuid4())
    assert_problem(
        tenant.post("/templates", json={"name": "T", "attribute_ids": [ghost]}),
        422,
        "attribute_ids[0]",
    )
    assert_problem(
        tenant.post(
            "/templates",
            json={
                "name": "T",
                "attribute_ids": [size["id"]],
                "required_attribute_ids": [color["id"]],
            },
        ),
        422,
        "required_attribute_ids[0]",
    )
    group = tenant.create(
        "/attribute-groups", name="Sizing", key="sizing", attribute_ids=[size["id"]]
    )
    assert group["attribute_ids"] == [size["id"]]
    assert_problem(
        tenant.post("/attribute-groups", json={"name": "G", "key": "g", "attribute_ids": [ghost]}),
        422,
        "attribute_ids[0]",
    )
    assert_problem(tenant.post("/attribute-groups", json={"name": "G", "key": "sizing"}), 409)
    # without a key, one is derived from the name (like a category's slug)
    derived = tenant.create("/attribute-groups", name="Main Spécs 2")
    assert derived["key"] == "main_specs_2"
    assert_problem(tenant.post("/attribute-groups", json={"name": "Main specs 2"}), 409, "key")
    assert_problem(tenant.post("/attribute-groups", json={"name": "2024"}), 422, "key")
    # an attribute's key is what products are keyed by: never guessed
    assert_problem(tenant.post("/attributes", json={"name": "Weight"}), 422, "key")
    product = tenant.create_product(template_id=template["id"])
    assert product["template_id"] == template["id"]
    assert_problem(
        tenant.post("/products", json={"title": "x", "template_id": ghost}), 422, "template_id"
    )
    assert_problem(
        tenant.post("/products", json={"title": "x", "brand_id": ghost}), 422, "brand_id"
    )


# -- media --------------------------------------------------------------------------------


def test_media_attach_to_products_and_variants_and_list_by_sort_order(tenant: Tenant) -> None:
    product = tenant.create_product()
    variant = tenant.create(f"/products/{product['id']}/variants", sku=f"M-{uuid.uuid4()}")
    third = tenant.create(
        "/media", url="https://cdn.example.com/3.jpg", product_id=product["id"], sort_order=2
    )
    first = tenant.create(
        "/media",
        url="https://cdn.example.com/1.jpg",
        product_id=product["id"],
        sort_order=0,
        alt_text="Front",
    )
    on_variant = tenant.create(
        "/media", url="https://cdn.example.com/v.jpg", variant_id=variant["id"], sort_order=1
    )
    second = tenant.create(
        "/media", url="https://cdn.example.com/2.jpg", product_id=product["id"], sort_order=0
    )
    by_product = tenant.get("/media", params={"product_id": product["id"]}).json()
    assert [m["id"] for m in by_product] == [first["id"], second["id"], third["id"]]
    by_variant = tenant.get("/media", params={"variant_id": variant["id"]}).json()
    assert [m["id"] for m in by_variant] == [on_variant["id"]]
    assert len(tenant.get("/media").json()) == 4
    assert_problem(tenant.get("/media", params={"product_id": "nope"}), 400)
    assert tenant.get("/media", params={"product_id": str(uuid.uuid4())}).json() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "https://x.example/a.jpg"}, "product_id"),
        ({"url": "ftp://x.example/a.jpg", "product_id": "P"}, "url"),
        ({"product_id": "P"}, "url"),
        ({"url": "https://x.example/a.jpg", "product_id": str(uuid.uuid4())}, "product_id"),
        ({"url": "https://x.example/a.jpg", "variant_id": str(uuid.uuid4())}, "variant_id"),
        ({"url": "https://x.example/a.jpg", "product_id": "P", "sort_order": 2**40}, "sort_order"),
        ({"url": "https://x.example/a.jpg", "product_id": "P", "sort_order": 1.5}, "sort_order"),
    ],
)
def test_bad_media_is_422_naming_the_field(
    tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    product = tenant.create_product()
    if body.get("product_id") == "P":
        body = {**body, "product_id": product["id"]}
    assert_problem(tenant.post("/media", json=body), 422, field)


def test_media_of_a_variant_must_match_its_product(tenant: Tenant) -> None:
    a = tenant.create_product()
    b = tenant.create_product()
    variant = tenant.create(f"/products/{a['id']}/variants", sku=f"MM-{uuid.uuid4()}")
    response = tenant.post(
        "/media",
        json={"url": "https://x.example/a.jpg", "product_id": b["id"], "variant_id": variant["id"]},
    )
    assert_problem(response, 422, "variant_id")


# -- cascades -----------------------------------------------------------------------------


def test_deleting_a_product_deletes_its_variants_and_media_as_events(tenant: Tenant) -> None:
    product = tenant.create_product()
    variant = tenant.create(f"/products/{product['id']}/variants", sku="CASCADE-1")
    media = tenant.create("/media", url="https://x.example/p.jpg", product_id=product["id"])
    variant_media = tenant.create("/media", url="https://x.example/v.jpg", variant_id=variant["id"])
    assert tenant.delete(f"/products/{product['id']}").status_code == 204
    assert_problem(tenant.get(f"/media/{media['id']}"), 404)
    assert_problem(tenant.get(f"/media/{variant_media['id']}"), 404)
    assert tenant.get("/media").json() == []
    deletions = tenant.get("/audit", params={"since": product["created_at"]}).json()
    deleted = {(e["action"], e["entity_id"]) for e in deletions if e["action"].endswith("DELETED")}
    assert deleted == {
        ("PRODUCT_DELETED", product["id"]),
        ("VARIANT_DELETED", variant["id"]),
        ("MEDIA_DELETED", media["id"]),
        ("MEDIA_DELETED", variant_media["id"]),
    }
    other = tenant.create_product()
    tenant.create(f"/products/{other['id']}/variants", sku="CASCADE-1")  # sku freed


def test_deleting_a_variant_deletes_its_media(tenant: Tenant) -> None:
    product = tenant.create_product()
    variant = tenant.create(f"/products/{product['id']}/variants", sku=f"V-{uuid.uuid4()}")
    media = tenant.create(
        "/media", url="https://x.example/v.jpg", variant_id=variant["id"], product_id=product["id"]
    )
    tenant.delete(f"/products/{product['id']}/variants/{variant['id']}")
    assert_problem(tenant.get(f"/media/{media['id']}"), 404)
    assert tenant.get(f"/products/{product['id']}").json()["variant_count"] == 0


# -- uniqueness under concurrency ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["sku", "slug", "attribute key"])
def test_twenty_concurrent_claims_of_one_unique_value_give_one_201(
    tenant: Tenant, kind: str
) -> None:
    product = tenant.create_product()
    value = f"v{uuid.uuid4().hex[:12]}"
    path, body = {
        "sku": (f"/products/{product['id']}/variants", {"sku": value}),
        "slug": ("/categories", {"name": "Race", "slug": value}),
        "attribute key": ("/attributes", {"name": "Race", "key": value}),
    }[kind]
    with ThreadPoolExecutor(max_workers=20) as pool:
        codes = sorted(pool.map(lambda _: tenant.post(path, json=body).status_code, range(20)))
    assert codes == [201] + [409] * 19, codes


# -- cross-tenant references --------------------------------------------------------------


def test_no_reference_can_point_at_another_tenants_objects(
    tenant: Tenant, attacker: Tenant
) -> None:
    product = tenant.create_product()
    variant = tenant.create(f"/products/{product['id']}/variants", sku=f"T-{uuid.uuid4()}")
    brand = tenant.create("/brands", name=f"Victim {uuid.uuid4()}")
    attribute = tenant.attribute(f"secret_{uuid.uuid4().hex[:8]}")
    template = tenant.create("/templates", name="T")
    category = tenant.create("/categories", name="Victim cat", slug=f"victim-{uuid.uuid4()}")

    def rejected(response: Any, status: int, field: str | None = None) -> None:
        assert_problem(response, status, field)

    rejected(attacker.post(f"/products/{product['id']}/variants", json={"sku": "X"}), 404)
    rejected(
        attacker.post(
            "/media", json={"url": "https://x.example/a.jpg", "product_id": product["id"]}
        ),
        422,
        "product_id",
    )
    rejected(
        attacker.post(
            "/media", json={"url": "https://x.example/a.jpg", "variant_id": variant["id"]}
        ),
        422,
        "variant_id",
    )
    rejected(
        attacker.post("/templates", json={"name": "T", "attribute_ids": [attribute["id"]]}),
        422,
        "attribute_ids[0]",
    )
    rejected(
        attacker.post(
            "/attribute-groups", json={"name": "G", "key": "g", "attribute_ids": [attribute["id"]]}
        ),
        422,
        "attribute_ids[0]",
    )
    rejected(
        attacker.post("/products", json={"title": "x", "brand_id": brand["id"]}), 422, "brand_id"
    )
    rejected(
        attacker.post("/products", json={"title": "x", "template_id": template["id"]}),
        422,
        "template_id",
    )
    rejected(
        attacker.post("/products", json={"title": "x", "category": category["slug"]}),
        422,
        "category",
    )
    rejected(
        attacker.post("/products", json={"title": "x", "attributes": {attribute["key"]: "v"}}),
        422,
        f"attributes.{attribute['key']}",
    )
    rejected(
        attacker.post("/categories", json={"name": "c", "parent_id": category["id"]}),
        422,
        "parent_id",
    )
    own = attacker.create_product()
    rejected(
        attacker.patch(f"/products/{own['id']}", json={"brand_id": brand["id"]}), 422, "brand_id"
    )
    # The victim's objects are untouched and the attacker's catalog holds only its own product.
    assert tenant.get(f"/products/{product['id']}").json()["variant_count"] == 1
    assert [p["id"] for p in attacker.get("/products").json()] == [own["id"]]
    assert attacker.get("/media").json() == []


@pytest.fixture
def attacker(other_tenant: Tenant) -> Tenant:
    return other_tenant
