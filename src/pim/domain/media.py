"""Media: images and files attached to a product and/or one of its variants."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from uuid import UUID

from msgspec import UNSET, UnsetType

from pim.domain.entity import Current, Entity, Fields, Values
from pim.domain.policy import Policy, Workspace, changed
from pim.domain.product import Product
from pim.domain.resource import ListFilter, ResourceInput, ResourceType, ResourceView
from pim.domain.rules import (
    FieldErrors,
    http_url,
    optional_field,
    optional_text_field,
    reference,
)
from pim.domain.variant import Variant

ALT_TEXT_MAX = 1_000
SORT_ORDER_RANGE = (-(2**31), 2**31 - 1)


class Media(Entity):
    entity_type: ClassVar[str] = "media"
    defaults: ClassVar[dict[str, Any]] = {
        "product_id": None,
        "variant_id": None,
        "alt_text": None,
        "sort_order": 0,
    }

    @classmethod
    def check(cls, values: Values, out: Fields, errors: FieldErrors, current: Current) -> None:
        if "url" in values:
            if values["url"] is None:
                errors.add("url", "required", "is required")
            else:
                out["url"] = http_url(errors, "url", values["url"])
        elif current is None:
            errors.add("url", "required", "is required")
        for field in ("product_id", "variant_id"):
            optional_field(errors, values, out, field, reference)
        optional_text_field(errors, values, out, "alt_text", max_length=ALT_TEXT_MAX)
        if "sort_order" in values:
            value = values["sort_order"]
            low, high = SORT_ORDER_RANGE
            if value is None:
                out["sort_order"] = 0
            elif isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                errors.add("sort_order", "out_of_range", "must be a 32-bit integer")
            else:
                out["sort_order"] = value
        state = {**cls.defaults, **(current or {}), **out}
        if not errors.errors and not state.get("product_id") and not state.get("variant_id"):
            errors.add("product_id", "required", "give a product_id and/or a variant_id")


class MediaInput(ResourceInput, kw_only=True):
    url: str | UnsetType | None = UNSET
    product_id: UUID | UnsetType | None = UNSET
    variant_id: UUID | UnsetType | None = UNSET
    alt_text: str | UnsetType | None = UNSET
    sort_order: int | UnsetType | None = UNSET


class MediaView(ResourceView, kw_only=True):
    url: str
    product_id: UUID | None
    variant_id: UUID | None
    alt_text: str | None
    sort_order: int


class MediaPolicy(Policy):
    """Media hang off a product and/or one of its variants, which must exist and agree."""

    def _attach(self, ws: Workspace, media: Entity) -> None:
        errors = FieldErrors()
        product_id = media.fields.get("product_id")
        variant_id = media.fields.get("variant_id")
        if product_id and ws.find(Product, product_id) is None:
            errors.add("product_id", "not_found", "no such product")
        variant = ws.find(Variant, variant_id) if variant_id else None
        if variant_id and variant is None:
            errors.add("variant_id", "not_found", "no such variant")
        if variant is not None and product_id and variant.product_id != product_id:
            errors.add("variant_id", "mismatch", "this variant belongs to another product")
        errors.raise_if_any()
        for parent in (product_id, variant_id):
            if parent:
                ws.children(parent).add(ws.actor, media.entity_id, "media")

    def _detach(self, ws: Workspace, media: Entity, fields: Mapping[str, Any]) -> None:
        for parent in (fields.get("product_id"), fields.get("variant_id")):
            if parent:
                ws.children(parent).remove(ws.actor, media.entity_id)

    def on_create(self, ws: Workspace, entity: Entity) -> None:
        self._attach(ws, entity)

    def on_update(self, ws: Workspace, entity: Entity, before: Mapping[str, Any]) -> None:
        if changed(entity, before, "product_id") or changed(entity, before, "variant_id"):
            self._detach(ws, entity, before)
            self._attach(ws, entity)

    def on_delete(self, ws: Workspace, entity: Entity) -> None:
        self._detach(ws, entity, entity.fields)


MEDIA = ResourceType(
    Media,
    "media",
    "Media",
    MediaInput,
    MediaView,
    MediaPolicy(),
    required=("url",),
    filters=(
        ListFilter("product_id", "uuid", column=True),
        ListFilter("variant_id", "uuid", column=True),
    ),
    ordered=True,
)
