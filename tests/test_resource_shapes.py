"""Every resource has one shape: the JSON PostgreSQL renders for reads and lists, the answer a
write renders from the aggregate, and the OpenAPI model clients generate code from all have
exactly the same fields in the same order (and the write answers the same values as the
read after it)."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from pim.domain.registry import RESOURCE_TYPES
from tests.conftest import Service, Tenant


def openapi(service: Service) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(f"{service.base_url}/schema/openapi.json").json()
    return document


def model_fields(document: dict[str, Any], path: str) -> set[str]:
    """The properties of the model a GET of ``path`` answers with."""
    schema = document["paths"][path]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ]
    name = schema["$ref"].rsplit("/", 1)[-1]
    return set(document["components"]["schemas"][name]["properties"])


def create_one_of_each(tenant: Tenant) -> dict[str, tuple[str, dict[str, Any]]]:
    """entity type -> (item path, the write's answer), one resource of every type."""
    size = tenant.attribute("size")
    product = tenant.create_product()
    pid = product["id"]
    made: dict[str, tuple[str, dict[str, Any]]] = {
        "attribute": (f"/attributes/{size['id']}", size),
    }
    bodies: dict[str, tuple[str, dict[str, Any]]] = {
        "variant": (
            f"/products/{pid}/variants",
            {"sku": "SHAPE-1", "price": "1.00", "currency": "EUR"},
        ),
        "category": ("/categories", {"name": "Shapes", "slug": "shapes"}),
        "brand": ("/brands", {"name": "Shape Co"}),
        "attribute_group": (
            "/attribute-groups",
            {"name": "Sizing", "key": "sizing", "attribute_ids": [size["id"]]},
        ),
        "template": ("/templates", {"name": "Shoe", "attribute_ids": [size["id"]]}),
        "media": ("/media", {"url": "https://cdn.example.com/a.jpg", "product_id": pid}),
    }
    for entity_type, (collection, body) in bodies.items():
        answer = tenant.create(collection, **body)
        made[entity_type] = (f"{collection}/{answer['id']}", answer)
    # The product's answer is taken after its variant exists (variant_count): an update's.
    updated = tenant.patch(f"/products/{pid}", json={"description": "Shaped"})
    assert updated.status_code == 200, updated.text
    made["product"] = (f"/products/{pid}", updated.json())
    return made


def test_every_resource_renders_exactly_its_openapi_model(service: Service, tenant: Tenant) -> None:
    document = openapi(service)
    made = create_one_of_each(tenant)
    assert set(made) == {r.entity_type for r in RESOURCE_TYPES}, "a resource type is untested"
    for resource in RESOURCE_TYPES:
        item_path, answer = made[resource.entity_type]
        if resource.parent is None:
            template = f"/api/v1/pim/{resource.collection}/{{entity_id}}"
        else:
            template = f"/api/v1/pim/products/{{product_id}}/{resource.collection}/{{entity_id}}"
        fields = model_fields(document, template)
        assert fields == set(resource.view.__struct_fields__), resource.entity_type

        read = tenant.get(item_path)
        assert read.status_code == 200, read.text
        assert set(read.json()) == fields, resource.entity_type
        assert set(answer) == fields, resource.entity_type
        assert read.json() == answer, f"{resource.entity_type}: the write answered another body"
        # id first, the resource's own fields, then version and timestamps, in both bodies;
        # rendered compactly like every other body (no spaces around ':' or after ',').
        assert list(read.json()) == list(answer), resource.entity_type
        assert next(iter(answer)) == "id"
        assert list(answer)[-3:] == ["version", "created_at", "updated_at"]
        assert read.content == msgspec.json.encode(read.json()), read.content

        collection = item_path.rsplit("/", 1)[0]
        listed = tenant.get(collection)
        assert listed.status_code == 200, listed.text
        assert listed.content == msgspec.json.encode(listed.json())
        for item in listed.json():
            assert list(item) == list(answer) or set(item) == fields, resource.entity_type
