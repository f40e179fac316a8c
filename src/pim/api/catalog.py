"""The catalog's resources: what each one is made of. Behaviour is shared (resources.py)."""

from __future__ import annotations

from pim.api.inputs import (
    READ_ONLY,
    AttributeGroupInput,
    AttributeInput,
    BrandInput,
    CategoryInput,
    MediaInput,
    ProductInput,
    TemplateInput,
    VariantInput,
)
from pim.api.resources import Resource
from pim.queries.products import ProductView
from pim.queries.views import (
    AttributeGroupView,
    AttributeView,
    BrandView,
    CategoryView,
    MediaView,
    TemplateView,
    VariantView,
)

RESOURCES: tuple[Resource, ...] = (
    Resource(
        "product",
        "products",
        ProductInput,
        ProductView,
        "Products",
        create_only=frozenset({"variants"}),
        time_travel=True,
    ),
    Resource(
        "variant",
        "variants",
        VariantInput,
        VariantView,
        "Variants",
        nested_in_products=True,
        ignore=READ_ONLY | {"product_id"},
    ),
    Resource("category", "categories", CategoryInput, CategoryView, "Categories"),
    Resource("brand", "brands", BrandInput, BrandView, "Brands"),
    Resource("attribute", "attributes", AttributeInput, AttributeView, "Attributes"),
    Resource(
        "attribute_group",
        "attribute-groups",
        AttributeGroupInput,
        AttributeGroupView,
        "Attribute groups",
    ),
    Resource("template", "templates", TemplateInput, TemplateView, "Templates"),
    Resource("media", "media", MediaInput, MediaView, "Media"),
)
