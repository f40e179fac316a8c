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
    barcode: str | None | Unset = UNSET
    price: Decimal | None | Unset = UNSET
    currency: str | None | Unset = UNSET
    option_values: dict[str, Any] | None | Unset = UNSET
    product_id: Any = UNSET  # read-only: the path names the product


class ProductInput(_Input, kw_only=True):
    title: str | Unset = UNSET
    description: str | None | Unset = UNSET
    category: str | None | Unset = UNSET
    status: Literal["ACTIVE", "DRAFT", "ARCHIVED"] | None | Unset = UNSET
    brand_id: UUID | None | Unset = UNSET
    template_id: UUID | None | Unset = UNSET
    # values are checked against attribute definitions, so errors name the key
    attributes: dict[str, Any] | None | Unset = UNSET
    variants: list[VariantInput] | Unset = UNSET  # on create only
    variant_count: Any = UNSET


class CategoryInput(_Input, kw_only=True):
    name: str | None | Unset = UNSET
    slug: str | None | Unset = UNSET
    description: str | None | Unset = UNSET
    parent_id: UUID | None | Unset = UNSET


class BrandInput(_Input, kw_only=True):
    name: str | None | Unset = UNSET
    description: str | None | Unset = UNSET
    logo_url: str | None | Unset = UNSET


class AttributeInput(_Input, kw_only=True):
    name: str | None | Unset = UNSET
    key: str | Unset = UNSET
    type: Literal["TEXT", "NUMBER", "BOOLEAN", "SELECT"] | Unset = UNSET
    options: list[str] | None | Unset = UNSET
    description: str | None | Unset = UNSET


class AttributeGroupInput(_Input, kw_only=True):
    name: str | None | Unset = UNSET
    key: str | Unset = UNSET
    description: str | None | Unset = UNSET
    attribute_ids: list[UUID] | None | Unset = UNSET


class TemplateInput(_Input, kw_only=True):
    name: str | None | Unset = UNSET
    description: str | None | Unset = UNSET
    attribute_ids: list[UUID] | None | Unset = UNSET
    required_attribute_ids: list[UUID] | None | Unset = UNSET


class MediaInput(_Input, kw_only=True):
    url: str | None | Unset = UNSET
    product_id: UUID | None | Unset = UNSET
    variant_id: UUID | None | Unset = UNSET
    alt_text: str | None | Unset = UNSET
    sort_order: int | None | Unset = UNSET


def provided_fields(struct: msgspec.Struct, *, ignore: frozenset[str] = READ_ONLY
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
