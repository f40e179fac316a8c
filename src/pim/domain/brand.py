"""Brands: unique names per tenant."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from msgspec import UNSET, UnsetType

from pim.domain.entity import Current, Entity, Fields, Values
from pim.domain.policy import Policy, Workspace
from pim.domain.resource import ResourceInput, ResourceType, ResourceView
from pim.domain.rules import (
    FieldErrors,
    http_url,
    name_field,
    optional_field,
    optional_text_field,
)


def brand_name_key(name: str) -> str:
    """Brand names are unique regardless of case ("Acme" and "ACME" are one brand)."""
    return name.casefold()


class Brand(Entity):
    entity_type: ClassVar[str] = "brand"
    defaults: ClassVar[dict[str, Any]] = {"description": None, "logo_url": None}

    @classmethod
    def check(cls, values: Values, out: Fields, errors: FieldErrors, current: Current) -> None:
        name_field(errors, values, out, current=current)
        optional_text_field(errors, values, out, "description")
        optional_field(errors, values, out, "logo_url", http_url)


class BrandInput(ResourceInput, kw_only=True):
    name: str | UnsetType | None = UNSET
    description: str | UnsetType | None = UNSET
    logo_url: str | UnsetType | None = UNSET


class BrandView(ResourceView, kw_only=True):
    name: str
    description: str | None
    logo_url: str | None


class BrandPolicy(Policy):
    """A brand's name is unique in its tenant, whatever its case."""

    def on_create(self, ws: Workspace, entity: Entity) -> None:
        name = entity.fields["name"]
        ws.claim(
            "brand-name",
            brand_name_key(name),
            entity.entity_id,
            f"brand name '{name}'",
            field="name",
        )

    def on_update(self, ws: Workspace, entity: Entity, before: Mapping[str, Any]) -> None:
        if brand_name_key(before["name"]) != brand_name_key(entity.fields["name"]):
            ws.release("brand-name", brand_name_key(before["name"]), entity.entity_id)
            self.on_create(ws, entity)

    def on_delete(self, ws: Workspace, entity: Entity) -> None:
        ws.release("brand-name", brand_name_key(entity.fields["name"]), entity.entity_id)


BRAND = ResourceType(
    Brand, "brands", "Brands", BrandInput, BrandView, BrandPolicy(), required=("name",)
)
