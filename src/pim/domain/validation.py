"""The validation rule catalogue: what makes a product unsellable, in pure Python.

Issues are not refused writes: a catalogue is built step by step, so a product may be
incomplete for a while and the service reports why it cannot be sold yet. The codes, their
severities and the variant rules live here, apart from any storage, so the queries (which
validate a ``code`` filter) and the projection (which keeps the issues current) agree on one
catalogue, and the rules can be tested without a database.

The product-level rules that join across aggregates (UNKNOWN_CATEGORY: the product's category
slug names no live category; MISSING_REQUIRED_ATTRIBUTE: its template requires an attribute it
has no value for) are evaluated set-based in SQL by ``pim.projections.validation``; their
messages and ids there must stay in step with this module."""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

from pim.domain.variant import is_valid_gtin

SKU_CONVENTION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

SEVERITY = {
    "MISSING_REQUIRED_ATTRIBUTE": "ERROR",
    "INVALID_SKU": "ERROR",
    "INVALID_BARCODE": "ERROR",
    "UNKNOWN_CATEGORY": "ERROR",
    "MISSING_PRICE": "WARNING",
    "NO_VARIANTS": "WARNING",
}
NO_VARIANTS_MESSAGE = "This product has no variants, so it cannot be sold."
PRODUCT_CODES = ("NO_VARIANTS", "UNKNOWN_CATEGORY", "MISSING_REQUIRED_ATTRIBUTE")


def issue_id(
    product_id: str, variant_id: str | None, code: str, attribute_key: str | None, message: str
) -> str:
    """Deterministic: the same problem keeps its id (and detected_at); computed the same way in
    SQL for product-level issues."""
    text = f"{product_id}|{variant_id or ''}|{code}|{attribute_key or ''}|{message}"
    return str(uuid.UUID(hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()))


def variant_issues(fields: dict[str, Any]) -> list[tuple[str, str]]:
    """(code, message) of one variant's own problems."""
    out: list[tuple[str, str]] = []
    sku = fields.get("sku") or ""
    if not SKU_CONVENTION.match(sku):
        out.append(
            (
                "INVALID_SKU",
                f"SKU '{sku}' breaks the catalog convention: start with a letter or digit, "
                "then only letters, digits, '.', '_' or '-'.",
            )
        )
    barcode = fields.get("barcode")
    if barcode and not is_valid_gtin(barcode):
        out.append(
            (
                "INVALID_BARCODE",
                f"Barcode '{barcode}' is not a valid GTIN-8, -12, -13 or -14 (UPC/EAN): "
                "check its length and check digit.",
            )
        )
    # Rows stored before the view kept only rule inputs hold the whole field map.
    priced = fields["priced"] if "priced" in fields else fields.get("price") is not None
    if not priced:
        out.append(("MISSING_PRICE", f"Variant '{sku}' has no price, so it cannot be sold."))
    return out


def rule_inputs(fields: dict[str, Any]) -> dict[str, Any]:
    """What the variant rules read, and all the view keeps of a variant: a price change that
    keeps a price (a bulk repricing) is then no work at all for this view."""
    return {
        "sku": fields.get("sku"),
        "barcode": fields.get("barcode"),
        "priced": fields.get("price") is not None,
    }
