"""Media: images and files attached to a product and/or one of its variants."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pim.domain.entity import Entity
from pim.domain.rules import FieldErrors, http_url, reference, text

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
        if "url" in values:
            if values["url"] is None:
                errors.add("url", "required", "is required")
            else:
                out["url"] = http_url(errors, "url", values["url"])
        elif current is None:
            errors.add("url", "required", "is required")
        for field in ("product_id", "variant_id"):
            if field in values:
                value = values[field]
                out[field] = None if value is None else reference(errors, field, value)
        if "alt_text" in values:
            value = values["alt_text"]
            out["alt_text"] = (
                None if value is None else text(errors, "alt_text", value, max_length=ALT_TEXT_MAX)
            )
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
        errors.raise_if_any()
        return out
