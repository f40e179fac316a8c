"""The export writer: one consistent snapshot of a tenant's catalog, streamed to CSV, NDJSON
or XLSX, against the real service's database."""

from __future__ import annotations

import csv
import io
import json
import secrets
import tracemalloc
import uuid
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pim.jobs.export import (
    EXPORT_FORMATS,
    EXPORT_SCOPES,
    PRODUCT_COLUMNS,
    VARIANT_COLUMNS,
    ExportError,
    ExportResult,
    catalog_snapshot,
    write_export,
)
from pim.queries.products import ProductFilters
from tests.conftest import Service, Tenant

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "ndjson": "application/x-ndjson"}
CONTENT_TYPES["xlsx"] = XLSX_TYPE

# -- reading the files back -----------------------------------------------------------------

_M = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_R = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"


def _column_index(ref: str) -> int:
    letters = "".join(ch for ch in ref if ch.isalpha())
    index = 0
    for ch in letters:
        index = index * 26 + (ord(ch) - ord("A") + 1)
    return index - 1


def read_xlsx(path: Path) -> dict[str, list[list[Any]]]:
    """Sheets of a workbook, in order: rows of cell values (text, or int for numbers)."""
    with zipfile.ZipFile(path) as archive:
        workbook = ET.fromstring(archive.read("xl/workbook.xml"))
        rels = ET.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
        targets = {rel.get("Id"): rel.get("Target") for rel in rels}
        shared: list[str] = []
        if "xl/sharedStrings.xml" in archive.namelist():
            table = ET.fromstring(archive.read("xl/sharedStrings.xml"))
            shared = ["".join(t.text or "" for t in si.iter(f"{_M}t")) for si in table]
        sheets: dict[str, list[list[Any]]] = {}
        for sheet in workbook.iter(f"{_M}sheet"):
            target = str(targets[sheet.get(f"{_R}id")]).lstrip("/")
            xml = ET.fromstring(
                archive.read(target if target.startswith("xl/") else f"xl/{target}")
            )
            rows: list[list[Any]] = []
            for row in xml.iter(f"{_M}row"):
                cells: list[Any] = []
                for cell in row.iter(f"{_M}c"):
                    col = _column_index(cell.get("r", ""))
                    cells.extend([""] * (col - len(cells)))
                    kind = cell.get("t")
                    if kind == "inlineStr":
                        value: Any = "".join(t.text or "" for t in cell.iter(f"{_M}t"))
                    elif kind == "s":
                        value = shared[int(cell.findtext(f"{_M}v") or "0")]
                    else:
                        value = int(float(cell.findtext(f"{_M}v") or "0"))
                    cells.append(value)
                rows.append(cells)
            sheets[str(sheet.get("name"))] = rows
    return sheets


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def read_ndjson(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def sheet_records(rows: list[list[Any]]) -> list[dict[str, Any]]:
    header, *body = rows
    return [dict(zip(header, row + [""] * (len(header) - len(row)), strict=True)) for row in body]


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalog(service: Service) -> dict[str, Any]:
    """A tenant with three products (one with two variants, one with one, one with none), and
    another tenant with a look-alike product and variant."""
    tenant = Tenant(service.base_url)
    tenant.category("shoes")
    tenant.category("hats")
    tenant.attribute("color")
    trail = tenant.create_product(
        title="Trail shoe", category="shoes", attributes={"color": "red"}, description="Grippy"
    )
    formula = tenant.create_product(title="=HYPERLINK(1)", category="hats", status="DRAFT")
    road = tenant.create_product(title="Road shoe 100%", status="ARCHIVED")
    variants = [
        tenant.create(
            f"/products/{trail['id']}/variants",
            sku="TS-1",
            price="89.9",
            currency="USD",
            option_values={"size": "M", "color": "red"},
        ),
        tenant.create(
            f"/products/{trail['id']}/variants",
            sku="TS-2",
            barcode="4006381333931",
            option_values={"size": "L"},
        ),
        tenant.create(f"/products/{formula['id']}/variants", sku="@cap", price=5, currency="EUR"),
    ]
    other = Tenant(service.base_url)
    other_product = other.create_product(title="Trail shoe")
    other_variant = other.create(
        f"/products/{other_product['id']}/variants", sku="OTHER-SKU", price="1", currency="USD"
    )
    return {
        "tenant": tenant,
        "products": [trail, formula, road],
        "variants": variants,
        "other_ids": {other_product["id"], other_variant["id"]},
    }


@pytest.fixture
def conn(service: Service) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(service.database_url) as connection:
        yield connection


def export(
    conn: psycopg.Connection[Any],
    catalog: dict[str, Any],
    tmp_path: Path,
    fmt: str,
    scope: str = "products",
    filters: ProductFilters | None = None,
    **kwargs: Any,
) -> ExportResult:
    job_id = str(uuid.uuid4())
    tenant: Tenant = catalog["tenant"]
    return write_export(
        conn,
        tenant_id=tenant.tenant_id,
        fmt=fmt,
        scope=scope,
        filters=filters or ProductFilters(),
        path=tmp_path / f"{job_id}.{fmt}",
        job_id=job_id,
        **kwargs,
    )


def api_products(catalog: dict[str, Any]) -> list[dict[str, Any]]:
    tenant: Tenant = catalog["tenant"]
    response = tenant.get("/products")
    assert response.status_code == 200
    products: list[dict[str, Any]] = response.json()
    return products


def api_variants(catalog: dict[str, Any], product_id: str) -> list[dict[str, Any]]:
    tenant: Tenant = catalog["tenant"]
    response = tenant.get(f"/products/{product_id}/variants")
    assert response.status_code == 200
    variants: list[dict[str, Any]] = response.json()
    return variants


def expected_product_cells(product: dict[str, Any]) -> dict[str, str]:
    cells = {name: product[name] for name in PRODUCT_COLUMNS}
    cells["attributes"] = json.dumps(product["attributes"], separators=(",", ":"))
    out = {k: "" if v is None else str(v) for k, v in cells.items()}
    out["title"] = "'" + out["title"] if out["title"].startswith("=") else out["title"]
    return out


def expected_variant_cells(variant: dict[str, Any], title: str) -> dict[str, str]:
    cells = {name: variant.get(name) for name in VARIANT_COLUMNS}
    cells["product_title"] = "'" + title if title.startswith("=") else title
    cells["option_values"] = json.dumps(variant["option_values"], separators=(",", ":"))
    out = {k: "" if v is None else str(v) for k, v in cells.items()}
    out["sku"] = "'" + out["sku"] if out["sku"].startswith("@") else out["sku"]
    return out


def all_variants(catalog: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(variant as the API shows it, product title), in export order."""
    return [
        (variant, product["title"])
        for product in api_products(catalog)
        for variant in api_variants(catalog, product["id"])
    ]


# -- formats --------------------------------------------------------------------------------


def test_csv_products_has_one_row_per_product_as_the_api_shows_it(
    conn: psycopg.Connection[Any], catalog: dict[str, Any], tmp_path: Path
) -> None:
    result = export(conn, catalog, tmp_path, "csv")

    assert result.rows == 3
    assert result.content_type == "text/csv; charset=utf-8"
    assert result.filename == f"products-{result.path.stem}.csv"
    assert result.path.read_text(encoding="utf-8").splitlines()[0] == ",".join(PRODUCT_COLUMNS)
    rows = read_csv(result.path)
    assert rows == [expected_product_cells(p) for p in api_products(catalog)]
    assert [r["id"] for r in rows] == [p["id"] for p in catalog["products"]]
    assert rows[0]["attributes"] == '{"color":"red"}'
    assert rows[0]["variant_count"] == "2"
    assert rows[0]["created_at"].endswith("Z")


def test_csv_variants_has_one_row_per_variant_with_its_product_title(
    conn: psycopg.Connection[Any], catalog: dict[str, Any], tmp_path: Path
) -> None:
    result = export(conn, catalog, tmp_path, "csv", scope="variants")

    assert result.rows == 3
    assert result.filename == f"variants-{result.path.stem}.csv"
    rows = read_csv(result.path)
    assert list(rows[0]) == list(VARIANT_COLUMNS)
    assert rows == [expected_variant_cells(v, title) for v, title in all_variants(catalog)]
    assert [r["sku"] for r in rows] == ["TS-1", "TS-2", "'@cap"]
    assert rows[0]["price"] == "89.90"
    assert rows[0]["product_title"] == "Trail shoe"
    assert rows[2]["price"] == "5.00"


def test_ndjson_products_are_the_api_products_with_their_variants_nested(
    conn: psycopg.Connection[Any], catalog: dict[str, Any], tmp_path: Path
) -> None:
    result = export(conn, catalog, tmp_path, "ndjson", batch_size=1)

    assert result.rows == 3
    assert result.content_type == "application/x-ndjson"
    assert result.filename == f"products-{result.path.stem}.ndjson"
    lines = read_ndjson(result.path)
    expected = [
        {**product, "variants": api_variants(catalog, product["id"])}
        for product in api_products(catalog)
    ]
    assert lines == expected
    assert [len(line["variants"]) for line in lines] == [2, 1, 0]
    assert lines[1]["title"] == "=HYPERLINK(1)"  # NDJSON is data, never neutralized


def test_ndjson_variants_are_the_api_variants(
    conn: psycopg.Connection[Any], catalog: dict[str, Any], tmp_path: Path
) -> None:
    result = export(conn, catalog, tmp_path, "ndjson", scope="variants")

    assert result.rows == 3
    assert read_ndjson(result.path) == [v for v, _ in all_variants(catalog)]


@pytest.mark.parametrize("scope", EXPORT_SCOPES)
def test_xlsx_has_a_products_sheet_and_a_variants_sheet_with_the_csv_columns(
    conn: psycopg.Connection[Any], catalog: dict[str, Any], tmp_path: Path, scope: str
) -> None:
    result = export(conn, catalog, tmp_path, "xlsx", scope=scope)

    assert result.rows == 3
    assert result.content_type == XLSX_TYPE
    assert result.filename == f"{scope}-{result.path.stem}.xlsx"
    sheets = read_xlsx(result.path)
    assert list(sheets) == ["products", "variants"]
    assert sheets["products"][0] == list(PRODUCT_COLUMNS)
    assert sheets["variants"][0] == list(VARIANT_COLUMNS)
    products = [{k: str(v) for k, v in row.items()} for row in sheet_records(sheets["products"])]
    assert products == [expected_product_cells(p) for p in api_products(catalog)]
    variants = [{k: str(v) for k, v in row.items()} for row in sheet_records(sheets["variants"])]
    assert variants == [expected_variant_cells(v, t) for v, t in all_variants(catalog)]
    # Counts are numbers, not text.
    assert sheet_records(sheets["products"])[0]["variant_count"] == 2


def test_a_tenant_with_nothing_gets_headers_only(
    conn: psycopg.Connection[Any], catalog: dict[str, Any], tmp_path: Path
) -> None:
    empty = {"tenant": Tenant("http://unused")}
    assert read_csv(export(conn, empty, tmp_path, "csv").path) == []
    assert export(conn, empty, tmp_path, "ndjson").path.read_bytes() == b""
    sheets = read_xlsx(export(conn, empty, tmp_path, "xlsx").path)
    assert sheets == {"products": [list(PRODUCT_COLUMNS)], "variants": [list(VARIANT_COLUMNS)]}


# -- filters, tenancy, injection ------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "titles"),
    [
        (ProductFilters(status="DRAFT"), ["=HYPERLINK(1)"]),
        (ProductFilters(category="shoes"), ["Trail shoe"]),
        (ProductFilters(q="SHOE"), ["Trail shoe", "Road shoe 100%"]),
        (ProductFilters(q="100%"), ["Road shoe 100%"]),
        (ProductFilters(q="%"), ["Road shoe 100%"]),  # a literal %, not a wildcard
        (ProductFilters(status="ACTIVE", category="hats"), []),
        (ProductFilters(category="no-such-category"), []),
    ],
)
def test_filters_select_products_like_the_products_list_and_variants_through_them(
    conn: psycopg.Connection[Any],
    catalog: dict[str, Any],
    tmp_path: Path,
    filters: ProductFilters,
    titles: list[str],
) -> None:
    products = read_ndjson(export(conn, catalog, tmp_path, "ndjson", filters=filters).path)
    variants = read_csv(export(conn, catalog, tmp_path, "csv", "variants", filters=filters).path)

    assert [p["title"] for p in products] == titles
    assert [v["id"] for v in variants] == [v["id"] for p in products for v in p["variants"]]
    query = {k: v for k, v in as_query_params(filters).items() if v is not None}
    listed = catalog["tenant"].get("/products", params=query).json()
    assert [p["id"] for p in products] == [p["id"] for p in listed]


def as_query_params(filters: ProductFilters) -> dict[str, str | None]:
    return {name: getattr(filters, name) for name in ProductFilters.__struct_fields__}


def test_updated_since_keeps_products_changed_at_or_after_it(
    conn: psycopg.Connection[Any], catalog: dict[str, Any], tmp_path: Path
) -> None:
    products = api_products(catalog)
    since = ProductFilters.parse({"updated_since": products[1]["updated_at"]})

    rows = read_csv(export(conn, catalog, tmp_path, "csv", filters=since).path)

    assert [r["id"] for r in rows] == [p["id"] for p in products[1:]]


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
@pytest.mark.parametrize("scope", EXPORT_SCOPES)
def test_another_tenants_rows_never_appear(
    conn: psycopg.Connection[Any], catalog: dict[str, Any], tmp_path: Path, fmt: str, scope: str
) -> None:
    result = export(conn, catalog, tmp_path, fmt, scope)

    if fmt == "xlsx":
        text = json.dumps(read_xlsx(result.path))
    else:
        text = result.path.read_text(encoding="utf-8")
    for foreign in catalog["other_ids"]:
        assert foreign not in text
    assert "OTHER-SKU" not in text
    assert catalog["products"][0]["id"] in text


def test_formula_like_cells_are_quoted_in_csv_and_xlsx(
    conn: psycopg.Connection[Any], catalog: dict[str, Any], tmp_path: Path
) -> None:
    csv_rows = read_csv(export(conn, catalog, tmp_path, "csv").path)
    sheets = read_xlsx(export(conn, catalog, tmp_path, "xlsx").path)

    assert csv_rows[1]["title"] == "'=HYPERLINK(1)"
    assert sheet_records(sheets["products"])[1]["title"] == "'=HYPERLINK(1)"
    assert sheet_records(sheets["variants"])[2]["sku"] == "'@cap"
    assert sheet_records(sheets["variants"])[2]["product_title"] == "'=HYPERLINK(1)"
    with zipfile.ZipFile(export(conn, catalog, tmp_path, "xlsx").path) as archive:
        assert b"<f>" not in archive.read("xl/worksheets/sheet1.xml")  # no formula cells


# -- the snapshot ---------------------------------------------------------------------------


def tracked_position(conn: psycopg.Connection[Any], tenant_id: str) -> int:
    """The tenant's position in the products and entities views (projections keep one
    position per tenant)."""
    row = conn.execute(
        "SELECT min(position) FROM projection_positions"
        " WHERE name IN ('products', 'entities') AND tenant_id = %s",
        (tenant_id,),
    ).fetchone()
    conn.commit()
    assert row is not None
    return int(row[0] or 0)


def test_position_is_the_projection_tracking_position(
    conn: psycopg.Connection[Any], catalog: dict[str, Any], tmp_path: Path
) -> None:
    tenant_id = catalog["tenant"].tenant_id
    before = tracked_position(conn, tenant_id)
    result = export(conn, catalog, tmp_path, "csv")
    after = tracked_position(conn, tenant_id)

    assert before <= result.position <= after
    newest_event = catalog["tenant"].get("/audit", params={"limit": 1}).json()[0]
    assert result.position >= newest_event["id"]


def test_the_snapshot_is_repeatable_read_and_read_only(
    conn: psycopg.Connection[Any], service: Service
) -> None:
    tenant_id = str(uuid.uuid4())
    count = "SELECT count(*) FROM products_view WHERE tenant_id = %s"
    try:
        with catalog_snapshot(conn, tenant_id) as position:
            assert position == tracked_position_of(service, tenant_id)
            settings = conn.execute(
                "SELECT current_setting('transaction_isolation'),"
                " current_setting('transaction_read_only')"
            ).fetchone()
            assert settings == ("repeatable read", "on")
            assert conn.execute(count, (tenant_id,)).fetchone() == (0,)
            insert_products(service, tenant_id, 1)  # committed by another connection
            assert conn.execute(count, (tenant_id,)).fetchone() == (0,)
        assert conn.execute(count, (tenant_id,)).fetchone() == (1,)
        conn.rollback()
    finally:
        delete_tenant_rows(service, tenant_id)


def tracked_position_of(service: Service, tenant_id: str) -> int:
    with psycopg.connect(service.database_url) as other:
        return tracked_position(other, tenant_id)


def test_the_connection_is_left_as_it_was_given(
    conn: psycopg.Connection[Any], catalog: dict[str, Any], tmp_path: Path
) -> None:
    for autocommit in (False, True):
        conn.autocommit = autocommit
        export(conn, catalog, tmp_path, "ndjson")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.isolation_level is None
        assert conn.read_only is None


def test_a_connection_already_in_a_transaction_is_refused(
    conn: psycopg.Connection[Any], catalog: dict[str, Any], tmp_path: Path
) -> None:
    conn.execute("SELECT 1")
    with pytest.raises(ExportError, match="transaction"):
        export(conn, catalog, tmp_path, "csv")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("fmt", "scope"), [("pdf", "products"), ("csv", "media")])
def test_unknown_formats_and_scopes_are_refused(
    conn: psycopg.Connection[Any], catalog: dict[str, Any], tmp_path: Path, fmt: str, scope: str
) -> None:
    with pytest.raises(ExportError):
        export(conn, catalog, tmp_path, fmt, scope)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_export_leaves_no_file_and_no_open_transaction(
    conn: psycopg.Connection[Any], catalog: dict[str, Any], tmp_path: Path
) -> None:
    # Not a UUID: PostgreSQL rejects the query once the file has been opened.
    broken = ProductFilters(brand_id="not-a-uuid")  # type: ignore[arg-type]

    for fmt in EXPORT_FORMATS:
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            export(conn, catalog, tmp_path, fmt, filters=broken)

    assert list(tmp_path.iterdir()) == []
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


# -- memory ---------------------------------------------------------------------------------

MANY = 3000
DESCRIPTION = "x" * 1000


def insert_products(
    service: Service, tenant_id: str, count: int, *, variants: bool = False
) -> None:
    """Rows straight into the views (fast, and only for tenants no other test uses)."""
    with psycopg.connect(service.database_url, autocommit=True) as conn:
        conn.execute(
            """INSERT INTO products_view (tenant_id, id, title, description, status, attributes,
                   variant_count, version, created_at, updated_at)
               SELECT %s, gen_random_uuid(), 'Product ' || n, %s, 'ACTIVE',
                      jsonb_build_object('n', n), %s, 1,
                      now() + n * interval '1 ms', now() + n * interval '1 ms'
               FROM generate_series(1, %s) AS n""",
            (tenant_id, DESCRIPTION, 1 if variants else 0, count),
        )
        if variants:
            conn.execute(
                """INSERT INTO entities_view (tenant_id, entity_type, id, product_id, doc,
                       version, created_at, updated_at)
                   SELECT tenant_id, 'variant', gen_random_uuid(), id,
                          jsonb_build_object('product_id', id, 'sku', 'SKU-' || id,
                              'barcode', null, 'price', '9.99', 'currency', 'USD',
                              'option_values', jsonb_build_object('size', 'M')),
                          1, created_at, updated_at
                   FROM products_view WHERE tenant_id = %s""",
                (tenant_id,),
            )


def delete_tenant_rows(service: Service, tenant_id: str) -> None:
    with psycopg.connect(service.database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM entities_view WHERE tenant_id = %s", (tenant_id,))
        conn.execute("DELETE FROM products_view WHERE tenant_id = %s", (tenant_id,))


@pytest.fixture(scope="module")
def big_catalog(service: Service) -> Iterator[dict[str, Any]]:
    tenant_id = str(uuid.uuid4())
    insert_products(service, tenant_id, MANY, variants=True)
    yield {"tenant": Tenant("http://unused", tenant_id=tenant_id)}
    delete_tenant_rows(service, tenant_id)


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
@pytest.mark.parametrize("scope", EXPORT_SCOPES)
def test_memory_stays_flat_while_exporting_thousands_of_products(
    conn: psycopg.Connection[Any],
    big_catalog: dict[str, Any],
    tmp_path: Path,
    fmt: str,
    scope: str,
) -> None:
    tracemalloc.start()
    try:
        result = export(conn, big_catalog, tmp_path, fmt, scope, batch_size=200)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result.rows == MANY
    size = result.path.stat().st_size
    assert peak < 3 * 1024 * 1024, f"peak {peak} bytes for a {size}-byte file"
    if fmt != "xlsx" and scope == "products":
        assert size > 2 * peak  # the file could not have been held in memory


def test_the_default_batch_keeps_a_3000_product_export_within_a_few_megabytes(
    conn: psycopg.Connection[Any], big_catalog: dict[str, Any], tmp_path: Path
) -> None:
    tracemalloc.start()
    try:
        result = export(conn, big_catalog, tmp_path, "ndjson")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result.rows == MANY
    lines = read_ndjson(result.path)
    assert all(len(line["variants"]) == 1 for line in lines)
    assert len({line["id"] for line in lines}) == MANY
    assert peak < 8 * 1024 * 1024, peak


def test_export_files_do_not_depend_on_the_batch_size(
    conn: psycopg.Connection[Any], catalog: dict[str, Any], tmp_path: Path
) -> None:
    for fmt in ("csv", "ndjson"):
        for scope in EXPORT_SCOPES:
            whole = export(conn, catalog, tmp_path, fmt, scope).path.read_bytes()
            one_by_one = export(conn, catalog, tmp_path, fmt, scope, batch_size=1)
            assert one_by_one.path.read_bytes() == whole


def test_job_ids_name_the_files(
    conn: psycopg.Connection[Any], catalog: dict[str, Any], tmp_path: Path
) -> None:
    job_id = secrets.token_hex(4)
    result = write_export(
        conn,
        tenant_id=catalog["tenant"].tenant_id,
        fmt="csv",
        scope="variants",
        filters=ProductFilters(),
        path=tmp_path / "out",
        job_id=job_id,
    )
    assert result.filename == f"variants-{job_id}.csv"
    assert result.path == tmp_path / "out"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert io.StringIO(result.path.read_text()).readline().startswith("id,product_id,")
