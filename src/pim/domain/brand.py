"""Brands: unique names per tenant."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pim.domain.entity import Entity
from pim.domain.rules import FieldErrors, http_url, name_field, optional_text_field


def brand_name_key(name: str) -> str:
    """Brand names are unique regardless of case ("Acme" and "ACME" are one brand)."""
    return name.casefold()


class Brand(Entity):
    entity_type: ClassVar[str] = "brand"
    defaults: ClassVar[dict[str, Any]] = {"description": None, "logo_url": None}

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
        optional_text_field(errors, values, out, "description")
        if "logo_url" in values:
            value = values["logo_url"]
            out["logo_url"] = None if value is None else http_url(errors, "logo_url", value)
        errors.raise_if_any()
        return out
