"""Products: the catalog's central entity."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pim.domain.context import Actor
from pim.domain.entity import Entity, FieldChanges
from pim.domain.errors import FieldError, ValidationFailed
from pim.domain.rules import ATTRIBUTE_KEY_PATTERN, FieldErrors, one_of, reference, slug, text

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

    class Updated(Entity.Updated):
        pass

    class Deleted(Entity.Deleted):
        pass

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
