"""Export files: the tenant's catalog written to CSV, NDJSON or XLSX from one consistent snapshot.

How the catalog is read
- One ``REPEATABLE READ, READ ONLY`` transaction (see ``catalog_snapshot``): every query of an
  export sees the same snapshot, so products, variants, ``variant_count`` and the reported
  ``position`` all agree. The projector commits views and tracking rows in one transaction, so
  the tracking position read in the snapshot is exactly the log position the rows reflect.
- Rows come from server-side (named) cursors fetched ``batch_size`` rows at a time and are
  written as they arrive: memory does not grow with the catalog. A long export holds its snapshot
  for its whole duration (which delays vacuum on the views); that is the price of consistency.
- The file is written beside ``path`` as ``<name>.part`` and renamed over ``path`` only when
  complete, so a job that dies halfway (dramatiq redelivers) never leaves a truncated file behind.

Formats
- csv: one row per product (scope ``products``) or per variant (scope ``variants``), header
  first, UTF-8, RFC 4180 quoting. ``attributes`` and ``option_values`` are compact JSON text;
  timestamps RFC 3339 UTC with ``Z``; ``price`` the exact decimal string the API shows.
- ndjson: scope ``products`` writes one product per line, exactly as the API shows it, with a
  ``variants`` array (each variant as the API shows it); scope ``variants`` writes one variant
  per line as the API shows it. Variants are merged in from a second cursor ordered like the
  products, so only one product's variants are ever held in memory.
- xlsx: a workbook in xlsxwriter's constant-memory mode with two sheets, ``products`` and
  ``variants``, carrying the CSV columns. Constant-memory mode requires rows in order, so the
  products sheet is written fully, then the variants sheet in a second pass over the snapshot.
  Every text cell is written as a string (never a formula, URL or number). Excel caps a cell at
  32,767 characters: longer values (a ``description`` may have 50,000) are truncated in
  xlsx only; csv and ndjson carry them whole. Prices stay exact text, as in the API.

Spreadsheet (CSV/formula) injection
- In csv and xlsx, a text cell starting with ``=``, ``+``, ``-``, ``@`` (or a tab or carriage
  return, which some spreadsheets strip before evaluating) is prefixed with a single quote ``'``,
  so a spreadsheet shows it as text instead of evaluating it (OWASP "CSV Injection"). A title
  such as ``-20% sale`` therefore reads ``'-20% sale`` in those files. NDJSON is data for
  programs, not spreadsheets, and carries every value unchanged.

Ordering: products by ``(created_at, id)``, like the products list; variants by their product's
``(created_at, id)``, then their own ``(created_at, id)``.

Filters are the products list filters (``ProductFilters``) with the same meaning; variants are
filtered through their product.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

import msgspec
import psycopg
import xlsxwriter  # type: ignore[import-untyped]
from psycopg import sql
from psycopg.pq import TransactionStatus
from psycopg.rows import tuple_row

from pim.projections.tenants import TENANT_POSITIONS
from pim.queries.products import ProductFilters, product_filter_sql

EXPORT_FORMATS: Final = ("csv", "ndjson", "xlsx")
EXPORT_SCOPES: Final = ("products", "variants")

CONTENT_TYPES: Final[dict[str, str]] = {
    "csv": "text/csv; charset=utf-8",
    "ndjson": "application/x-ndjson",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

PRODUCT_COLUMNS: Final = (
    "id",
    "title",
    "description",
    "category",
    "status",
    "brand_id",
    "template_id",
    "attributes",
    "variant_count",
    "version",
    "created_at",
    "updated_at",
)
VARIANT_COLUMNS: Final = (
    "id",
    "product_id",
    "product_title",
    "sku",
    "barcode",
    "price",
    "currency",
    "option_values",
    "version",
    "created_at",
    "updated_at",
)
# The variant as the API shows it (no product_title).
VARIANT_API_FIELDS: Final = tuple(c for c in VARIANT_COLUMNS if c != "product_title")

BATCH_SIZE: Final = 2000
TRACKING_NAMES: Final = ("products", "entities")
XLSX_MAX_ROWS: Final = 1_048_576  # per sheet, header included
XLSX_MAX_CELL_CHARS: Final = 32_767

PRODUCTS_TABLE: Final = "products_view"
ENTITIES_TABLE: Final = "entities_view"

_FORMULA_TRIGGERS: Final = ("=", "+", "-", "@", "\t", "\r")

Row = tuple[Any, ...]


class ExportError(Exception):
    """An export that cannot be written (bad arguments, or a file format limit exceeded)."""


@dataclass(frozen=True)
class ExportResult:
    rows: int  # products (scope "products") or variants (scope "variants") written
    position: int  # the catalog log position the file reflects
    content_type: str
    filename: str
    path: Path


def export_filename(scope: str, job_id: str, fmt: str) -> str:
    """``products-<job_id>.csv``, ``variants-<job_id>.xlsx``, ..."""
    return f"{scope}-{job_id}.{fmt}"


# -- the snapshot ---------------------------------------------------------------------------


@contextmanager
def catalog_snapshot(conn: psycopg.Connection[Any], tenant_id: str) -> Iterator[int]:
    """Open a ``REPEATABLE READ, READ ONLY`` transaction on ``conn`` and yield the catalog
    position its snapshot reflects for ``tenant_id``: the lower of the products and entities
    projections' positions for the tenant (projections keep one per tenant).

    ``conn`` must not be in a transaction (autocommit or not). ``conn.transaction()`` sends
    ``BEGIN``; ``SET TRANSACTION`` is then its first statement, which PostgreSQL requires (the
    snapshot is taken by the first query after it). This leaves the connection's own settings
    (``isolation_level``, ``read_only``) untouched, unlike ``conn.set_isolation_level()``,
    which would change every later transaction of a connection the caller may share.
    """
    if conn.info.transaction_status != TransactionStatus.IDLE:
        raise ExportError("the connection must not be in a transaction")
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        with conn.cursor(row_factory=tuple_row) as cur:
            rows = cur.execute(TENANT_POSITIONS, (list(TRACKING_NAMES), tenant_id)).fetchall()
        yield min(int(position) for _, position in rows)


# -- queries --------------------------------------------------------------------------------


def _products_query(tenant_id: str, filters: ProductFilters) -> tuple[sql.Composed, list[Any]]:
    where, args = product_filter_sql(tenant_id, filters, "p")
    query = sql.SQL(
        "SELECT p.id, p.title, p.description, p.category, p.status, p.brand_id, p.template_id,"
        " p.attributes, p.variant_count, p.version, p.created_at, p.updated_at"
        " FROM {} AS p WHERE {} ORDER BY p.created_at, p.id"
    ).format(sql.Identifier(PRODUCTS_TABLE), where)
    return query, args


def _variants_query(tenant_id: str, filters: ProductFilters) -> tuple[sql.Composed, list[Any]]:
    """Variants of the matching products, in VARIANT_COLUMNS order, grouped by product in the
    products' order."""
    where, args = product_filter_sql(tenant_id, filters, "p")
    query = sql.SQL(
        "SELECT v.id, v.product_id, p.title, v.doc ->> 'sku', v.doc ->> 'barcode',"
        " v.doc ->> 'price', v.doc ->> 'currency',"
        " coalesce(v.doc -> 'option_values', '{{}}'::jsonb), v.version, v.created_at,"
        " v.updated_at"
        " FROM {} AS v JOIN {} AS p ON p.tenant_id = v.tenant_id AND p.id = v.product_id"
        " WHERE v.tenant_id = %s AND v.entity_type = 'variant' AND {}"
        " ORDER BY p.created_at, p.id, v.created_at, v.id"
    ).format(sql.Identifier(ENTITIES_TABLE), sql.Identifier(PRODUCTS_TABLE), where)
    return query, [tenant_id, *args]


@contextmanager
def _server_rows(
    conn: psycopg.Connection[Any],
    name: str,
    query: tuple[sql.Composed, list[Any]],
    batch_size: int,
) -> Iterator[Iterator[Row]]:
    """Rows of ``query`` from a server-side cursor, fetched ``batch_size`` at a time; the cursor
    is closed on exit."""
    with conn.cursor(name=name, row_factory=tuple_row) as cur:
        cur.itersize = batch_size
        cur.execute(query[0], query[1])
        yield iter(cur)


# -- cell values ----------------------------------------------------------------------------


def rfc3339(value: datetime) -> str:
    """RFC 3339 in UTC with ``Z``, as the API writes timestamps."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def neutralize_formula(text: str) -> str:
    """``text`` made safe to open in a spreadsheet (see the module docstring)."""
    return "'" + text if text.startswith(_FORMULA_TRIGGERS) else text


_json_encoder = msgspec.json.Encoder()


def _cells(row: Row) -> list[str | int]:
    """A product or variant row as spreadsheet cells: text (formula-neutralized) and ints."""
    cells: list[str | int] = []
    for value in row:
        if value is None:
            cells.append("")
        elif isinstance(value, bool):
            cells.append("true" if value else "false")
        elif isinstance(value, int):
            cells.append(value)
        elif isinstance(value, datetime):
            cells.append(rfc3339(value))
        elif isinstance(value, dict | list):
            cells.append(neutralize_formula(_json_encoder.encode(value).decode()))
        else:
            cells.append(neutralize_formula(str(value)))
    return cells


def _product_json(row: Row, variants: list[dict[str, Any]] | None) -> dict[str, Any]:
    item = dict(zip(PRODUCT_COLUMNS, row, strict=True))
    item["created_at"] = item["created_at"].astimezone(UTC)
    item["updated_at"] = item["updated_at"].astimezone(UTC)
    if variants is not None:
        item["variants"] = variants
    return item


def _variant_json(row: Row) -> dict[str, Any]:
    values = dict(zip(VARIANT_COLUMNS, row, strict=True))
    values["created_at"] = values["created_at"].astimezone(UTC)
    values["updated_at"] = values["updated_at"].astimezone(UTC)
    return {name: values[name] for name in VARIANT_API_FIELDS}


# -- writers --------------------------------------------------------------------------------


def _write_csv(out: IO[str], header: Sequence[str], rows: Iterator[Row]) -> int:
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    count = 0
    for row in rows:
        writer.writerow(_cells(row))
        count += 1
    return count


def _write_ndjson_products(out: IO[bytes], products: Iterator[Row], variants: Iterator[Row]) -> int:
    """One product per line with its variants, merging two cursors ordered by product."""
    encoder = msgspec.json.Encoder()
    buffer = bytearray()
    pending = next(variants, None)
    count = 0
    for product in products:
        product_id = product[0]
        own: list[dict[str, Any]] = []
        # Both cursors follow the products' order; a variant of another product belongs to a
        # later one (variants of unmatched products never appear: the filter is joined in).
        while pending is not None and pending[1] == product_id:
            own.append(_variant_json(pending))
            pending = next(variants, None)
        buffer.clear()
        encoder.encode_into(_product_json(product, own), buffer)
        buffer += b"\n"
        out.write(buffer)
        count += 1
    if pending is not None:
        raise ExportError("variants out of step with products (inconsistent ordering)")
    return count


def _write_ndjson_variants(out: IO[bytes], variants: Iterator[Row]) -> int:
    encoder = msgspec.json.Encoder()
    buffer = bytearray()
    count = 0
    for row in variants:
        buffer.clear()
        encoder.encode_into(_variant_json(row), buffer)
        buffer += b"\n"
        out.write(buffer)
        count += 1
    return count


def _write_sheet(workbook: Any, name: str, header: Sequence[str], rows: Iterator[Row]) -> int:
    sheet = workbook.add_worksheet(name)
    bold = workbook.add_format({"bold": True})
    for col, title in enumerate(header):
        sheet.write_string(0, col, title, bold)
    sheet.freeze_panes(1, 0)
    count = 0
    for row in rows:
        count += 1
        if count >= XLSX_MAX_ROWS:
            raise ExportError(f"more than {XLSX_MAX_ROWS - 1} rows for one xlsx sheet")
        for col, cell in enumerate(_cells(row)):
            if isinstance(cell, int):
                sheet.write_number(count, col, cell)
            elif cell:
                sheet.write_string(count, col, cell[:XLSX_MAX_CELL_CHARS])
    return count


def _write_xlsx(
    partial: Path,
    scope: str,
    products: Callable[[], AbstractContextManager[Iterator[Row]]],
    variants: Callable[[], AbstractContextManager[Iterator[Row]]],
) -> int:
    # xlsxwriter keeps each sheet's rows, and the package parts, in temporary files; a private
    # directory beside the export removes them all even when the export fails (xlsxwriter
    # itself leaks the row file of a sheet that never got a row).
    with tempfile.TemporaryDirectory(prefix=".xlsx-", dir=partial.parent) as tmpdir:
        workbook = xlsxwriter.Workbook(
            str(partial),
            {
                "constant_memory": True,
                "tmpdir": tmpdir,
                # Every text cell is text: never a formula, a hyperlink or a number.
                "strings_to_numbers": False,
                "strings_to_formulas": False,
                "strings_to_urls": False,
            },
        )
        try:
            # Constant-memory sheets take rows in order: one full pass per sheet.
            with products() as product_rows:
                product_count = _write_sheet(workbook, "products", PRODUCT_COLUMNS, product_rows)
            with variants() as variant_rows:
                variant_count = _write_sheet(workbook, "variants", VARIANT_COLUMNS, variant_rows)
        finally:
            workbook.close()
    return product_count if scope == "products" else variant_count


# -- the export -----------------------------------------------------------------------------


def write_export(
    conn: psycopg.Connection[Any],
    *,
    tenant_id: str,
    fmt: str,
    scope: str,
    filters: ProductFilters,
    path: Path,
    job_id: str,
    batch_size: int = BATCH_SIZE,
) -> ExportResult:
    """Write the tenant's products (or variants) matching ``filters`` to ``path`` in ``fmt``,
    all read from one snapshot; see the module docstring for formats and guarantees.

    ``conn`` must not be in a transaction; it is left out of one (and otherwise unchanged).
    Raises ``ExportError`` for an unknown format or scope, or a file format limit exceeded.
    """
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"format must be one of {', '.join(EXPORT_FORMATS)}")
    if scope not in EXPORT_SCOPES:
        raise ExportError(f"scope must be one of {', '.join(EXPORT_SCOPES)}")
    if batch_size < 1:
        raise ExportError("batch_size must be positive")
    partial = path.with_name(path.name + ".part")

    def products() -> AbstractContextManager[Iterator[Row]]:
        query = _products_query(tenant_id, filters)
        return _server_rows(conn, "pim_export_products", query, batch_size)

    def variants() -> AbstractContextManager[Iterator[Row]]:
        query = _variants_query(tenant_id, filters)
        return _server_rows(conn, "pim_export_variants", query, batch_size)

    try:
        with catalog_snapshot(conn, tenant_id) as position:
            if fmt == "csv":
                header, source = (
                    (PRODUCT_COLUMNS, products)
                    if scope == "products"
                    else (VARIANT_COLUMNS, variants)
                )
                with (
                    partial.open("w", encoding="utf-8", newline="") as text_out,
                    source() as csv_rows,
                ):
                    rows = _write_csv(text_out, header, csv_rows)
            elif fmt == "ndjson":
                with partial.open("wb") as binary_out:
                    if scope == "products":
                        with products() as product_rows, variants() as variant_rows:
                            rows = _write_ndjson_products(binary_out, product_rows, variant_rows)
                    else:
                        with variants() as variant_rows:
                            rows = _write_ndjson_variants(binary_out, variant_rows)
            else:
                rows = _write_xlsx(partial, scope, products, variants)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return ExportResult(
        rows=rows,
        position=position,
        content_type=CONTENT_TYPES[fmt],
        filename=export_filename(scope, job_id, fmt),
        path=path,
    )
