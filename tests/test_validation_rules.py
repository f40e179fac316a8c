"""The validation rule catalogue on its own: no database, no service."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from pim.domain.validation import (
    NO_VARIANTS_MESSAGE,
    PRODUCT_CODES,
    SEVERITY,
    issue_id,
    rule_inputs,
    variant_issues,
)

PRODUCT = "3f0c8a52-6f1e-4a8e-9a55-0b1f6f0c2d11"
VARIANT = "9b2d7c1e-1c2a-4f5e-8d3b-7e6a5c4b3a21"


def codes(fields: dict[str, object]) -> list[str]:
    return [code for code, _ in variant_issues(fields)]


def test_every_code_has_a_severity() -> None:
    assert set(PRODUCT_CODES) <= set(SEVERITY)
    assert set(SEVERITY.values()) == {"ERROR", "WARNING"}
    assert SEVERITY["MISSING_PRICE"] == SEVERITY["NO_VARIANTS"] == "WARNING"


def test_issue_id_is_deterministic_and_distinguishes_its_inputs() -> None:
    first = issue_id(PRODUCT, VARIANT, "INVALID_SKU", None, "m")
    assert first == issue_id(PRODUCT, VARIANT, "INVALID_SKU", None, "m")
    assert uuid.UUID(first).hex == first.replace("-", "")
    others = {
        issue_id(PRODUCT, None, "INVALID_SKU", None, "m"),
        issue_id(PRODUCT, VARIANT, "MISSING_PRICE", None, "m"),
        issue_id(PRODUCT, VARIANT, "INVALID_SKU", "color", "m"),
        issue_id(PRODUCT, VARIANT, "INVALID_SKU", None, "n"),
    }
    assert first not in others and len(others) == 4


def test_product_issue_id_matches_the_sql_formula() -> None:
    """The projection computes product-level ids in SQL as
    md5(product_id || '||' || code || '|' || COALESCE(attribute_key, '') || '|' || message)."""
    message = "Attribute 'color' is required by template 'Shoe' but has no value."
    sql_text = f"{PRODUCT}||MISSING_REQUIRED_ATTRIBUTE|color|{message}"
    expected = str(uuid.UUID(hashlib.md5(sql_text.encode()).hexdigest()))
    assert issue_id(PRODUCT, None, "MISSING_REQUIRED_ATTRIBUTE", "color", message) == expected
    no_variants = f"{PRODUCT}||NO_VARIANTS||{NO_VARIANTS_MESSAGE}"
    assert issue_id(PRODUCT, None, "NO_VARIANTS", None, NO_VARIANTS_MESSAGE) == str(
        uuid.UUID(hashlib.md5(no_variants.encode()).hexdigest())
    )


@pytest.mark.parametrize("sku", ["A1", "sku-1", "x.y_z-9", "9"])
def test_sku_convention_accepts(sku: str) -> None:
    assert codes({"sku": sku, "priced": True}) == []


@pytest.mark.parametrize("sku", ["", "-a", ".a", "_a", "a b", "a/b", "é1", None])
def test_sku_convention_refuses(sku: str | None) -> None:
    assert codes({"sku": sku, "priced": True}) == ["INVALID_SKU"]


def test_barcode_must_be_a_valid_gtin_when_present() -> None:
    assert codes({"sku": "A", "barcode": "4006381333931", "priced": True}) == []
    assert codes({"sku": "A", "barcode": None, "priced": True}) == []
    assert codes({"sku": "A", "barcode": "", "priced": True}) == []
    assert codes({"sku": "A", "barcode": "4006381333932", "priced": True}) == ["INVALID_BARCODE"]
    assert codes({"sku": "A", "barcode": "123", "priced": True}) == ["INVALID_BARCODE"]


def test_messages_name_the_values() -> None:
    issues = dict(variant_issues({"sku": "-x", "barcode": "123", "priced": False}))
    assert list(issues) == ["INVALID_SKU", "INVALID_BARCODE", "MISSING_PRICE"]
    assert "'-x'" in issues["INVALID_SKU"]
    assert "'123'" in issues["INVALID_BARCODE"]
    assert issues["MISSING_PRICE"] == "Variant '-x' has no price, so it cannot be sold."


def test_rule_inputs_keep_only_what_the_rules_read() -> None:
    fields: dict[str, object] = {
        "sku": "A",
        "barcode": None,
        "price": "9.99",
        "name": "n",
        "option_values": {},
    }
    assert rule_inputs(fields) == {"sku": "A", "barcode": None, "priced": True}
    assert rule_inputs({"sku": "A", "price": None}) == {
        "sku": "A",
        "barcode": None,
        "priced": False,
    }
    # A repricing that keeps a price leaves the inputs, and so the issues, unchanged.
    assert rule_inputs({**fields, "price": "1.00"}) == rule_inputs(fields)


def test_rows_stored_before_rule_inputs_are_read_from_their_price() -> None:
    assert codes({"sku": "A", "price": "1.00"}) == []
    assert codes({"sku": "A", "price": None}) == ["MISSING_PRICE"]
    assert codes({"sku": "A"}) == ["MISSING_PRICE"]
    assert variant_issues(rule_inputs({"sku": "A", "price": "1"})) == variant_issues(
        {"sku": "A", "price": "1"}
    )
