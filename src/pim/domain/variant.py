"""Variants: the sellable units of a product (SKU, barcode, price, option values)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

from msgspec import UNSET, UnsetType
from stdnum import ean

from pim.domain.entity import Current, Entity, Fields, Values
from pim.domain.money import PRICE_MAX, format_price, minor_units, to_decimal
from pim.domain.policy import Policy, Workspace, changed
from pim.domain.resource import READ_ONLY, ListFilter, ResourceInput, ResourceType, ResourceView
from pim.domain.rules import FieldErrors, has_control_characters, text

SKU_MAX = 64
BARCODE_MAX = 32
OPTION_KEY_MAX = 64
OPTION_VALUE_MAX = 255


def is_valid_gtin(barcode: str) -> bool:
    """GTIN-8/12/13/14 (UPC, EAN) with a correct check digit."""
    return (
        len(barcode) in (8, 12, 13, 14)
        and barcode.isascii()
        and barcode.isdigit()
        and bool(ean.is_valid(barcode))
    )


class Variant(Entity):
    entity_type: ClassVar[str] = "variant"
    merge_fields: ClassVar[frozenset[str]] = frozenset({"option_values"})
    defaults: ClassVar[dict[str, Any]] = {
        "barcode": None,
        "price": None,
        "currency": None,
        "option_values": {},
    }

    @property
    def product_id(self) -> str:
        return str(self.fields["product_id"])

    @classmethod
    def check(cls, values: Values, out: Fields, errors: FieldErrors, current: Current) -> None:
        if "sku" in values:
            out["sku"] = _sku(errors, values["sku"])
        elif current is None:
            errors.add("sku", "required", "is required")
        if "barcode" in values:
            value = values["barcode"]
            # An empty barcode is no barcode (clients clear a form field that way).
            out["barcode"] = (
                None
                if value is None or value == ""
                else text(
                    errors, "barcode", value, min_length=1, max_length=BARCODE_MAX, single_line=True
                )
            )
        if "option_values" in values:
            out["option_values"] = _option_values(
                errors, values["option_values"], allow_removal=current is not None
            )
        if "currency" in values:
            currency = values["currency"]
            if currency is not None and minor_units(str(currency)) is None:
                errors.add("currency", "invalid_currency", "must be an ISO 4217 currency code")
            else:
                out["currency"] = currency
        if "price" in values or "currency" in values:
            _price(errors, values, out, current)


def _sku(errors: FieldErrors, value: Any) -> str | None:
    if not isinstance(value, str):
        errors.add("sku", "invalid_type", "must be a string")
        return None
    if not 1 <= len(value) <= SKU_MAX:
        errors.add("sku", "too_long" if value else "required", f"must be 1 to {SKU_MAX} characters")
        return None
    if value != value.strip() or has_control_characters(value):
        errors.add(
            "sku",
            "invalid_format",
            "must not start or end with whitespace or contain control characters",
        )
        return None
    return value


def _price(
    errors: FieldErrors,
    values: Mapping[str, Any],
    out: dict[str, Any],
    current: Mapping[str, Any] | None,
) -> None:
    if "currency" in values and "currency" not in out:
        return  # the currency sent is invalid, already reported: the price cannot be checked
    state = {**Variant.defaults, **(current or {})}
    raw_price = values["price"] if "price" in values else state.get("price")
    currency = out["currency"] if "currency" in out else state.get("currency")
    if raw_price is None:
        if "price" in values:
            out["price"] = None
        return
    amount = to_decimal(raw_price)
    if amount is None:
        errors.add("price", "invalid_format", 'must be a decimal number, e.g. "89.99"')
        return
    if amount < 0 or amount > PRICE_MAX:
        errors.add("price", "out_of_range", f"must be between 0 and {PRICE_MAX}")
        return
    if currency is None:
        errors.add("currency", "required", "is required when a price is set")
        return
    exponent = minor_units(str(currency))
    if exponent is None:
        return  # already reported on currency
    formatted = format_price(amount, exponent)
    if formatted is None:
        errors.add(
            "price", "too_precise", f"{currency} prices have at most {exponent} decimal places"
        )
        return
    out["price"] = formatted


def _option_values(
    errors: FieldErrors, value: Any, *, allow_removal: bool
) -> dict[str, Any] | None:
    if value is None:
        return {} if not allow_removal else None
    if not isinstance(value, Mapping):
        errors.add("option_values", "invalid_type", "must be an object")
        return None
    out: dict[str, Any] = {}
    for key, item in value.items():
        field = f"option_values.{key}"
        if (
            not isinstance(key, str)
            or not 1 <= len(key) <= OPTION_KEY_MAX
            or has_control_characters(key)
        ):
            errors.add(field, "invalid_key", f"option names are 1 to {OPTION_KEY_MAX} characters")
            continue
        if item is None:
            if allow_removal:
                out[key] = None
            continue
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            errors.add(field, "invalid_type", "must be a string or number")
            continue
        if isinstance(item, str) and not 1 <= len(item) <= OPTION_VALUE_MAX:
            errors.add(field, "too_long", f"must be 1 to {OPTION_VALUE_MAX} characters")
            continue
        out[key] = item
    return out


def option_signature(option_values: Mapping[str, Any]) -> str | None:
    """A canonical form of a variant's option values, unique within its product."""
    if not option_values:
        return None
    return json.dumps(option_values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class VariantInput(ResourceInput, kw_only=True):
    sku: str | UnsetType = UNSET
    barcode: str | UnsetType | None = UNSET
    price: Decimal | UnsetType | None = UNSET
    currency: str | UnsetType | None = UNSET
    option_values: dict[str, Any] | UnsetType | None = UNSET
    product_id: Any = UNSET  # read-only: the path names the product


class VariantView(ResourceView, kw_only=True):
    product_id: UUID
    sku: str
    barcode: str | None
    price: str | None
    currency: str | None
    option_values: dict[str, Any]


class VariantPolicy(Policy):
    """SKUs are unique per tenant, option values per product; a variant is one of its
    product's children and takes its media with it."""

    @staticmethod
    def _claims(ws: Workspace, variant: Variant) -> None:
        sku = variant.fields["sku"]
        ws.claim("sku", sku, variant.entity_id, f"sku '{sku}'", field="sku")
        signature = option_signature(variant.fields.get("option_values") or {})
        if signature is not None:
            label = f"a variant of this product with option_values {signature}"
            ws.claim(
                f"options:{variant.product_id}",
                signature,
                variant.entity_id,
                label,
                field="option_values",
            )

    @staticmethod
    def _releases(ws: Workspace, variant: Variant, fields: Mapping[str, Any]) -> None:
        ws.release("sku", fields["sku"], variant.entity_id)
        signature = option_signature(fields.get("option_values") or {})
        if signature is not None:
            ws.release(f"options:{variant.product_id}", signature, variant.entity_id)

    def on_create(self, ws: Workspace, entity: Entity) -> None:
        assert isinstance(entity, Variant)
        self._claims(ws, entity)
        ws.children(entity.product_id).add(ws.actor, entity.entity_id, "variant")

    def on_update(self, ws: Workspace, entity: Entity, before: Mapping[str, Any]) -> None:
        assert isinstance(entity, Variant)
        if changed(entity, before, "sku") or changed(entity, before, "option_values"):
            self._releases(ws, entity, before)
            self._claims(ws, entity)

    def on_delete(self, ws: Workspace, entity: Entity) -> None:
        assert isinstance(entity, Variant)
        self._releases(ws, entity, entity.fields)
        ws.children(entity.product_id).remove(ws.actor, entity.entity_id)
        own = ws.children(entity.entity_id)
        own.close(ws.actor)
        for media_id in own.of_type("media"):
            media = ws.find(Entity, media_id)
            if media is not None:
                ws.delete(media)


VARIANT = ResourceType(
    Variant,
    "variants",
    "Variants",
    VariantInput,
    VariantView,
    VariantPolicy(),
    required=("sku",),
    filters=(ListFilter("sku"),),
    parent="product",
    ignore=READ_ONLY | {"product_id"},
)
