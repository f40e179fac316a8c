"""Categories: a tree per tenant, addressed by unique slug."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pim.domain.entity import Entity
from pim.domain.rules import (
    FieldErrors,
    name_field,
    optional_text_field,
    reference,
    slug,
    slugify,
)


class Category(Entity):
    entity_type: ClassVar[str] = "category"
    defaults: ClassVar[dict[str, Any]] = {"description": None, "parent_id": None}

    class Created(Entity.Created):
        pass

    class Updated(Entity.Updated):
        pass

    class Deleted(Entity.Deleted):
        pass

    @classmethod
    def normalise(
        cls, values: Mapping[str, Any], *, current: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        errors = FieldErrors()
        out: dict[str, Any] = {}
        name_field(errors, values, out, current=current)
        if values.get("slug") is not None:
            out["slug"] = slug(errors, "slug", values["slug"])
        elif "slug" in values and current is not None:
            errors.add("slug", "required", "cannot be null")
        elif current is None and isinstance(out.get("name"), str):
            derived = slugify(out["name"])
            if derived:
                out["slug"] = derived
            else:
                errors.add("slug", "required", "give a slug: none can be derived from the name")
        optional_text_field(errors, values, out, "description")
        if "parent_id" in values:
            value = values["parent_id"]
            out["parent_id"] = None if value is None else reference(errors, "parent_id", value)
        errors.raise_if_any()
        return out
