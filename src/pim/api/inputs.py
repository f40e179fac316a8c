"""Request bodies of every resource, decoded strictly at the edge. Read-only fields (id,
version, timestamps, counts) are accepted and ignored, so GET -> edit -> PUT works."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

import msgspec

UNSET = msgspec.UNSET
Unset = msgspec.UnsetType
READ_ONLY = frozenset({"id", "version", "created_at", "updated_at", "variant_count"})


class _Input(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    id: Any = UNSET
    version: Any = UNSET
    created_at: Any = UNSET
    updated_at: Any = UNSET


class VariantInput(_Input, kw_only=True):
    sku: str | Unset = UNSET
    barcode: str | Unset | None = UNSET
    price: Decimal | Unset | None = UNSET
    currency: str | Unset | None = UNSET
    option_values: dict[str, Any] | Unset | None = UNSET
    product_id: Any = UNSET  # read-only: the path names the product


class ProductInput(_Input, kw_only=True):
    title: str | Unset = UNSET
    description: str | Unset | None = UNSET
    category: str | Unset | None = UNSET
    status: Literal["ACTIVE", "DRAFT", "ARCHIVED"] | Unset | None = UNSET
    brand_id: UUID | Unset | None = UNSET
    template_id: UUID | Unset | None = UNSET
    # values are checked against attribute definitions, so errors name the key
    attributes: dict[str, Any] | Unset | None = UNSET
    variants: list[VariantInput] | Unset = UNSET  # on create only
    variant_count: Any = UNSET


class CategoryInput(_Input, kw_only=True):
    name: str | Unset | None = UNSET
    slug: str | Unset | None = UNSET
    description: str | Unset | None = UNSET
    parent_id: UUID | Unset | None = UNSET


class BrandInput(_Input, kw_only=True):
    name: str | Unset | None = UNSET
    description: str | Unset | None = UNSET
    logo_url: str | Unset | None = UNSET


class AttributeInput(_Input, kw_only=True):
    name: str | Unset | None = UNSET
    key: str | Unset = UNSET
    type: Literal["TEXT", "NUMBER", "BOOLEAN", "SELECT"] | Unset = UNSET
    options: list[str] | Unset | None = UNSET
    description: str | Unset | None = UNSET


class AttributeGroupInput(_Input, kw_only=True):
    name: str | Unset | None = UNSET
    key: str | Unset = UNSET
    description: str | Unset | None = UNSET
    attribute_ids: list[UUID] | Unset | None = UNSET


class TemplateInput(_Input, kw_only=True):
    name: str | Unset | None = UNSET
    description: str | Unset | None = UNSET
    attribute_ids: list[UUID] | Unset | None = UNSET
    required_attribute_ids: list[UUID] | Unset | None = UNSET


class MediaInput(_Input, kw_only=True):
    url: str | Unset | None = UNSET
    product_id: UUID | Unset | None = UNSET
    variant_id: UUID | Unset | None = UNSET
    alt_text: str | Unset | None = UNSET
    sort_order: int | Unset | None = UNSET


def provided_fields(
    struct: msgspec.Struct, *, ignore: frozenset[str] = READ_ONLY
) -> dict[str, Any]:
    """The fields a client actually sent (UNSET ones left out), minus read-only ones."""
    out: dict[str, Any] = {}
    for name in struct.__struct_fields__:
        value = getattr(struct, name)
        if name in ignore or value is UNSET:
            continue
        if isinstance(value, UUID):
            value = str(value)
        elif isinstance(value, list):
            value = [str(v) if isinstance(v, UUID) else v for v in value]
        out[name] = value
    return out
