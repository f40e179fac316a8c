"""Read models of every non-product resource, as clients see them."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec


class _Resource(msgspec.Struct, kw_only=True):
    id: UUID
    version: int
    created_at: datetime
    updated_at: datetime


class VariantView(_Resource, kw_only=True):
    product_id: UUID
    sku: str
    barcode: str | None
    price: str | None
    currency: str | None
    option_values: dict[str, Any]


class CategoryView(_Resource, kw_only=True):
    name: str
    slug: str
    description: str | None
    parent_id: UUID | None


class BrandView(_Resource, kw_only=True):
    name: str
    description: str | None
    logo_url: str | None


class AttributeView(_Resource, kw_only=True):
    name: str
    key: str
    type: str
    options: list[str] | None
    description: str | None


class AttributeGroupView(_Resource, kw_only=True):
    name: str
    key: str | None = None
    description: str | None
    attribute_ids: list[UUID]


class TemplateView(_Resource, kw_only=True):
    name: str
    description: str | None
    attribute_ids: list[UUID]
    required_attribute_ids: list[UUID]


class MediaView(_Resource, kw_only=True):
    url: str
    product_id: UUID | None
    variant_id: UUID | None
    alt_text: str | None
    sort_order: int


VIEWS: dict[str, type[_Resource]] = {
    "variant": VariantView,
    "category": CategoryView,
    "brand": BrandView,
    "attribute": AttributeView,
    "attribute_group": AttributeGroupView,
    "template": TemplateView,
    "media": MediaView,
}
