"""Bulk job and export request bodies, checked when the job is created (422 naming the field),
so a worker never starts on a payload it cannot run."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

import msgspec

from pim.domain.errors import FieldError, ValidationFailed
from pim.domain.money import minor_units
from pim.queries.pages import InvalidQuery
from pim.queries.products import ProductFilters

UNSET = msgspec.UNSET
Unset = msgspec.UnsetType
MAX_ITEMS = 1_000_000


class PriceChange(msgspec.Struct, forbid_unknown_fields=True):
    op: Literal["set", "add", "multiply"]
    value: Decimal
    currency: str | None = None


class BulkSet(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    status: Literal["ACTIVE", "DRAFT", "ARCHIVED"] | Unset = UNSET
    category: str | Unset | None = UNSET
    brand_id: UUID | Unset | None = UNSET
    template_id: UUID | Unset | None = UNSET
    attributes: dict[str, Any] | Unset | None = UNSET


class Selection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    product_ids: list[UUID] | None = None
    filter: dict[str, Any] | None = None


class BulkUpdatePayload(Selection, forbid_unknown_fields=True, kw_only=True):
    set: BulkSet | None = None
    price: PriceChange | None = None
    dry_run: bool = False


class BulkDeletePayload(Selection, forbid_unknown_fields=True, kw_only=True):
    dry_run: bool = False


class BulkImportPayload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # Items are checked one by one when the job runs, like single POSTs (per-item errors).
    products: list[dict[str, Any]]
    dry_run: bool = False


class ExportPayload(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    format: Literal["csv", "ndjson", "xlsx"] = "csv"
    scope: Literal["products", "variants"] = "products"
    filters: dict[str, Any] | None = None


class BulkJobInput(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The body of POST /bulk-jobs."""

    type: str | None = None
    job_type: str | None = None  # alias existing clients send
    payload: dict[str, Any] | None = None
    dry_run: bool = False


class ExportInput(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The body of POST /export (the export's payload itself)."""

    format: str = "csv"
    scope: str = "products"
    filters: dict[str, Any] | None = None


FILTER_NAMES = frozenset(ProductFilters.__struct_fields__)
PRICE_LIMIT = Decimal("1000000000000")


def parse_filters(filters: dict[str, Any] | None, field: str) -> ProductFilters | None:
    """Product filters in a job body. Unlike a list's query string, an unknown name is an
    error here: a typo must not widen a bulk delete to the whole catalog."""
    if filters is None:
        return None
    errors = [
        FieldError(
            f"{field}.{name}",
            "unknown_filter",
            f"is not a filter; use {', '.join(sorted(FILTER_NAMES))}",
        )
        for name in filters
        if name not in FILTER_NAMES
    ]
    errors += [
        FieldError(f"{field}.{name}", "invalid_type", "must be a string")
        for name, value in filters.items()
        if name in FILTER_NAMES and not isinstance(value, str)
    ]
    if errors:
        raise ValidationFailed(errors)
    try:
        return ProductFilters.parse(filters)
    except InvalidQuery as exc:
        raise ValidationFailed(
            [FieldError(f"{field}.{exc.parameter}", "invalid_filter", exc.message)]
        ) from None


def check_payload(payload: msgspec.Struct) -> None:
    """Rules beyond types: a selection names its items one way; an update changes something."""
    errors: list[FieldError] = []
    if isinstance(payload, Selection):
        if (payload.product_ids is None) == (payload.filter is None):
            errors.append(
                FieldError("payload.product_ids", "required", "give either product_ids or filter")
            )
        if payload.product_ids is not None and len(payload.product_ids) > MAX_ITEMS:
            errors.append(FieldError("payload.product_ids", "too_long", f"at most {MAX_ITEMS} ids"))
        parse_filters(payload.filter, "payload.filter")
    if isinstance(payload, BulkUpdatePayload) and payload.price is not None:
        value = payload.price.value
        if not value.is_finite() or abs(value) > PRICE_LIMIT:
            errors.append(
                FieldError(
                    "payload.price.value",
                    "out_of_range",
                    f"must be a finite number of at most {PRICE_LIMIT}",
                )
            )
    if isinstance(payload, BulkUpdatePayload) and payload.price is not None:
        # What would fail every item is refused up front.
        currency = payload.price.currency
        if currency is not None and minor_units(currency) is None:
            errors.append(
                FieldError(
                    "payload.price.currency",
                    "invalid_currency",
                    "must be an ISO 4217 currency code",
                )
            )
        if (
            payload.price.op == "set"
            and payload.price.value.is_finite()
            and payload.price.value < 0
        ):
            errors.append(
                FieldError("payload.price.value", "out_of_range", "a price cannot be negative")
            )
    if isinstance(payload, BulkUpdatePayload) and payload.set is None and payload.price is None:
        errors.append(FieldError("payload.set", "required", "give set and/or price"))
    if isinstance(payload, BulkImportPayload) and len(payload.products) > MAX_ITEMS:
        errors.append(FieldError("payload.products", "too_long", f"at most {MAX_ITEMS} items"))
    if isinstance(payload, ExportPayload):
        parse_filters(payload.filters, "filters")
    if errors:
        raise ValidationFailed(errors)
