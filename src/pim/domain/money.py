"""Prices: exact decimals in a real ISO 4217 currency, at most its minor units."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from functools import lru_cache

from iso4217 import Currency

PRICE_MAX = Decimal("1000000000000")


@lru_cache(maxsize=512)
def minor_units(code: str) -> int | None:
    """Minor units of an ISO 4217 currency (JPY 0, USD 2, KWD 3); None when the code is not
    a currency with minor units (unknown, or a fund/metal code such as XAU)."""
    if len(code) != 3 or not code.isascii() or not code.isupper():
        return None
    try:
        exponent = Currency(code).exponent
    except ValueError:
        return None
    return exponent if isinstance(exponent, int) else None


def to_decimal(value: object) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int | float | str):
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            return None
    else:
        return None
    return number if number.is_finite() else None


def format_price(amount: Decimal, exponent: int) -> str | None:
    """The canonical string for ``amount`` in a currency, or None if it has too many digits."""
    quantum = Decimal(1).scaleb(-exponent)
    quantized = amount.quantize(quantum)
    if quantized != amount:
        return None
    # -0.00 is a price of 0.00, not a negative one.
    return f"{abs(quantized) if quantized.is_zero() else quantized:f}"
