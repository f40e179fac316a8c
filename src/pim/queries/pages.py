"""Keyset pages: an opaque cursor holding the last row's sort key. Cost never grows with depth."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import datetime
from typing import TypeVar
from uuid import UUID

import msgspec

DEFAULT_LIMIT = 100
MAX_LIMIT = 100

T = TypeVar("T")


class InvalidQuery(ValueError):
    """A query parameter is malformed or outside its range; ``parameter`` names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message


class CreatedKey(msgspec.Struct, array_like=True, frozen=True):
    """Sort key of creation-ordered lists."""

    created_at: datetime
    id: UUID


def encode_cursor(key: msgspec.Struct) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(key)).decode().rstrip("=")


def decode_cursor(value: str, key_type: type[T]) -> T:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        return msgspec.json.decode(raw, type=key_type)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise InvalidQuery("cursor", "is not a cursor this service issued") from None


_NATURAL = re.compile(r"^[0-9]{1,18}$")


def parse_natural(value: str) -> int | None:
    """A non-negative decimal integer that fits a PostgreSQL bigint, or None."""
    return int(value) if _NATURAL.match(value) else None


def parse_limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        raise InvalidQuery("limit", "must be an integer between 1 and 100") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidQuery("limit", "must be an integer between 1 and 100")
    return limit


def rfc3339_sql(column: str) -> str:
    """SQL rendering a timestamptz exactly as the API's encoder does (UTC, "Z", microseconds
    only when non-zero), so lists built by PostgreSQL match single reads byte for byte."""
    utc = f"({column} AT TIME ZONE 'UTC')"
    return (
        f"CASE WHEN mod(date_part('microseconds', {column})::bigint, 1000000) = 0"
        f' THEN to_char({utc}, \'YYYY-MM-DD"T"HH24:MI:SS"Z"\')'
        f' ELSE to_char({utc}, \'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\') END'
    )


def json_array(items: list[bytes]) -> bytes:
    return b"[" + b",".join(items) + b"]"


class Rendered(msgspec.Struct, frozen=True):
    """One resource rendered as JSON by PostgreSQL, with what the HTTP layer needs."""

    body: bytes
    version: int
    product_id: str | None = None
