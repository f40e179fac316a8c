"""Products: the catalog's central entity."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal
from uuid import UUID

import msgspec
from msgspec import UNSET, UnsetType

from pim.domain.attribute import Attribute, Template
from pim.domain.brand import Brand
from pim.domain.context import Actor
from pim.domain.entity import Entity, FieldChanges
from pim.domain.errors import FieldError, ValidationFailed
from pim.domain.policy import Policy, Workspace, changed
from pim.domain.resource import ResourceInput, ResourceType, ResourceView
from pim.domain.rules import ATTRIBUTE_KEY_PATTERN, FieldErrors, one_of, reference, slug, text
from pim.domain.variant import VariantInput

PRODUCT_STATUSES = ("ACTIVE", "DRAFT", "ARCHIVED")
TITLE_MAX = 255
DESCRIPTION_MAX = 50_000


class Product(Entity):
    entity_type: ClassVar[str] = "product"
    merge_fields: ClassVar[frozenset[str]] = frozenset({"attributes"})
    defaults: ClassVar[dict[str, Any]] = {
        "description": None,
        "category": None,
        "status": "ACTIVE",
        "brand_id": None,
        "template_id": None,
        "attributes": {},
    }

    class Created(Entity.Created):
        # v1 (before templates and typed attributes) had no template_id/attributes fields.
        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["fields"] = {"template_id": None, "attributes": {}, **state["fields"]}

    class Reverted(Entity.Updated):
        """An update whose new values are those of an earlier version."""

        to_version: int

    def revert(self, actor: Actor, earlier: Product) -> FieldChanges:
        """Make the content equal to ``earlier``'s (a past version of this product); no event
        when it already is."""
        self.check_exists()
        changes: FieldChanges = {}
        for name in sorted(set(self.fields) | set(earlier.fields)):
            before, after = self.fields.get(name), earlier.fields.get(name)
            if before != after:
                changes[name] = {"from": before, "to": after}
        if changes:
            self.check_state({**self.fields, **{k: c["to"] for k, c in changes.items()}})
            self.trigger_event(
                self.Reverted, changes=changes, to_version=earlier.version, **actor.event_meta()
            )
        return changes

    @classmethod
    def normalise(
        cls, values: Mapping[str, Any], *, current: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        creating = current is None
        errors = FieldErrors()
        out: dict[str, Any] = {}
        for name, value in values.items():
            if name == "title":
                if value is None:
                    errors.add("title", "required", "is required")
                else:
                    out[name] = text(
                        errors,
                        name,
                        value,
                        min_length=1,
                        max_length=TITLE_MAX,
                        trim=True,
                        single_line=True,
                    )
            elif name == "description":
                out[name] = (
                    None if value is None else text(errors, name, value, max_length=DESCRIPTION_MAX)
                )
            elif name == "category":
                out[name] = None if value is None else slug(errors, name, value)
            elif name == "status":
                if value is None:
                    errors.add("status", "required", "cannot be null")
                else:
                    out[name] = one_of(errors, name, value, PRODUCT_STATUSES)
            elif name in ("brand_id", "template_id"):
                out[name] = None if value is None else reference(errors, name, value)
            elif name == "attributes":
                out[name] = attribute_values(errors, value, allow_removal=not creating)
            else:
                errors.add(name, "unknown_field", "is not a product field")
        if creating and "title" not in values:
            errors.add("title", "required", "is required")
        errors.raise_if_any()
        if creating:
            return {k: v for k, v in out.items() if v is not None}
        return out

    def check_state(self, fields: Mapping[str, Any]) -> None:
        if not fields.get("title"):
            raise ValidationFailed([FieldError("title", "required", "is required")])

    def as_resource(self, *, variant_count: int = 0) -> dict[str, Any]:
        """The product as clients see it (its read model's fields, in its order);
        ``variant_count`` is derived from its children list."""
        fields = self.fields
        return {
            "id": self.entity_id,
            "title": fields.get("title"),
            "description": fields.get("description"),
            "category": fields.get("category"),
            "status": fields.get("status"),
            "brand_id": fields.get("brand_id"),
            "template_id": fields.get("template_id"),
            "attributes": fields.get("attributes") or {},
            "variant_count": variant_count,
            "version": self.version,
            "created_at": self.created_on,
            "updated_at": self.modified_on,
        }


def attribute_values(
    errors: FieldErrors, value: Any, *, allow_removal: bool
) -> dict[str, Any] | None:
    """The shape of an attributes object; values are typed against their definitions by the
    command handler, which can see the attribute aggregates."""
    if value is None:
        return {} if not allow_removal else None
    if not isinstance(value, Mapping):
        errors.add("attributes", "invalid_type", "must be an object")
        return None
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not ATTRIBUTE_KEY_PATTERN.match(key):
            errors.add(
                f"attributes.{key}", "invalid_key", "attribute keys match ^[a-z][a-z0-9_]{0,63}$"
            )
            continue
        if item is None and not allow_removal:
            continue
        out[key] = item
    return out


class ProductInput(ResourceInput, kw_only=True):
    title: str | UnsetType = UNSET
    description: str | UnsetType | None = UNSET
    category: str | UnsetType | None = UNSET
    status: Literal["ACTIVE", "DRAFT", "ARCHIVED"] | UnsetType | None = UNSET
    brand_id: UUID | UnsetType | None = UNSET
    template_id: UUID | UnsetType | None = UNSET
    # values are checked against attribute definitions, so errors name the key
    attributes: dict[str, Any] | UnsetType | None = UNSET
    variants: list[VariantInput] | UnsetType = UNSET  # on create only
    variant_count: Any = UNSET


class RevertInput(msgspec.Struct, forbid_unknown_fields=True):
    """The body of a revert: the earlier version whose content the product takes again."""

    version: int


class ProductView(ResourceView, kw_only=True):
    title: str
    description: str | None
    category: str | None
    status: str
    brand_id: UUID | None
    template_id: UUID | None
    attributes: dict[str, Any]
    variant_count: int


class ProductPolicy(Policy):
    """References (category slug, brand, template) exist in the tenant; attribute values are
    typed by their definitions; a product takes its variants and media with it."""

    def loads(self, ws: Workspace, entity_id: str) -> list[str]:
        return [ws.entity_key(entity_id), ws.children_key(entity_id)]

    def resource(self, ws: Workspace, entity: Entity) -> dict[str, Any]:
        assert isinstance(entity, Product)
        children = ws.find_children(entity.entity_id)
        return entity.as_resource(variant_count=len(children.of_type("variant")) if children else 0)

    def check(
        self,
        ws: Workspace,
        fields: Mapping[str, Any],
        names: list[str],
        patch_attributes: Mapping[str, Any] | None = None,
    ) -> None:
        errors = FieldErrors()
        category = fields.get("category") if "category" in names else None
        if category and ws.owner_of("category-slug", category) is None:
            errors.add("category", "not_found", "no category of this tenant has that slug")
        for name, cls in (("brand_id", Brand), ("template_id", Template)):
            ref = fields.get(name) if name in names else None
            if ref and ws.find(cls, ref) is None:
                errors.add(name, "not_found", f"no such {cls.entity_type}")
        if "attributes" in names:
            values = (
                patch_attributes if patch_attributes is not None else fields.get("attributes") or {}
            )
            for key, value in values.items():
                if value is None:
                    continue
                owner = ws.owner_of("attribute-key", key)
                attribute = ws.find(Attribute, owner) if owner else None
                if attribute is None:
                    errors.add(
                        f"attributes.{key}",
                        "unknown_attribute",
                        "no attribute with this key is defined",
                    )
                    continue
                problem = attribute.check_value(value)
                if problem:
                    errors.add(f"attributes.{key}", "invalid_value", problem)
        errors.raise_if_any()

    def on_create(self, ws: Workspace, entity: Entity) -> None:
        self.check(ws, entity.fields, list(entity.fields))

    def on_update(self, ws: Workspace, entity: Entity, before: Mapping[str, Any]) -> None:
        names = [n for n in entity.fields if changed(entity, before, n)]
        patch = None
        if "attributes" in names:
            old = before.get("attributes") or {}
            patch = {k: v for k, v in entity.fields["attributes"].items() if old.get(k) != v}
        self.check(ws, entity.fields, names, patch)

    def on_delete(self, ws: Workspace, entity: Entity) -> None:
        children = ws.children(entity.entity_id)
        children.close(ws.actor)
        for child_id in list(children.members):
            child = ws.find(Entity, child_id)
            if child is not None:
                ws.delete(child)


PRODUCT = ResourceType(
    Product,
    "products",
    "Products",
    ProductInput,
    ProductView,
    ProductPolicy(),
    required=("title",),
    read_model="products",
    create_only=frozenset({"variants"}),
    time_travel=True,
)
