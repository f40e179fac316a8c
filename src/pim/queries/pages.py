"""Keyset pages: an opaque cursor holding the last row's sort key. Cost never grows with depth."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import msgspec
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

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


async def keyset_page(
    pool: AsyncConnectionPool[AsyncConnection[Any]],
    columns: sql.Composable,
    source: sql.Composable,
    where: Sequence[sql.Composable],
    args: Sequence[Any],
    key: type[msgspec.Struct],
    *,
    limit: int,
    cursor: str | None,
    alias: str | None = None,
) -> tuple[list[tuple[Any, ...]], str | None]:
    """One page of a list in the order of ``key``'s fields (columns of the row, the last one
    unique), and the cursor of the next page (None on the last one).

    ``SELECT <columns> FROM <source> WHERE <where...>``: the key's columns are selected after
    ``columns``, read back to build the cursor and cut off the rows returned. One query of
    ``limit + 1`` rows: the extra row only says whether there is more."""
    keys = [sql.Identifier(*(alias, f) if alias else (f,)) for f in key.__struct_fields__]
    tuple_sql = sql.SQL("({})").format(sql.SQL(", ").join(keys))
    conditions = list(where)
    params = list(args)
    if cursor is not None:
        after = decode_cursor(cursor, key)
        marks = sql.SQL(", ").join(sql.Placeholder() * len(keys))
        conditions.append(sql.SQL("{} > ({})").format(tuple_sql, marks))
        params += [getattr(after, f) for f in key.__struct_fields__]
    query = sql.SQL("SELECT {}, {} FROM {} WHERE {} ORDER BY {} LIMIT %s").format(
        columns,
        sql.SQL(", ").join(keys),
        source,
        sql.SQL(" AND ").join(conditions),
        sql.SQL(", ").join(keys),
    )
    async with pool.connection() as conn:
        cur = await conn.execute(query, [*params, limit + 1], prepare=True)
        rows = await cur.fetchall()
    n = len(keys)
    page = [tuple(row[:-n]) for row in rows[:limit]]
    more = encode_cursor(key(*rows[limit - 1][-n:])) if len(rows) > limit else None
    return page, more


def view_json(fields: Sequence[str], value_of: Callable[[str], sql.Composable]) -> sql.Composable:
    """SQL rendering one row as a JSON object with exactly ``fields``, in that order (a
    view's response fields); ``value_of`` gives each field's SQL expression. Timestamps are
    rendered as the API's encoder does. (PostgreSQL puts spaces around ':'; the HTTP layer
    compacts bodies, see ``compact``.)"""
    parts: list[sql.Composable] = []
    for name in fields:
        value = (
            sql.SQL(rfc3339_sql(name)) if name in ("created_at", "updated_at") else value_of(name)
        )
        parts.append(sql.SQL("{}, {}").format(sql.Literal(name), value))
    return sql.SQL("json_build_object({})::text").format(sql.SQL(", ").join(parts))


def compact(body: bytes) -> bytes:
    """JSON text without insignificant whitespace, keys in their order: every body the API
    sends looks the same, whoever rendered it."""
    return msgspec.json.format(body, indent=-1)


def json_array(items: list[bytes]) -> bytes:
    return b"[" + b",".join(items) + b"]"


class Rendered(msgspec.Struct, frozen=True):
    """One resource rendered as JSON by PostgreSQL, with what the HTTP layer needs."""

    body: bytes
    version: int
    product_id: str | None = None
