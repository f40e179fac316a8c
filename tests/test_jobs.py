"""Exports and bulk jobs through the HTTP API, run by the real worker (PostgreSQL + Redis):
POST /export, POST|GET /bulk-jobs, GET /bulk-jobs/{id}[/result], and the webhooks they fire."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest

from tests.conftest import Tenant, assert_problem, own_service_env, start_service

JOB_TIMEOUT_S = 30.0
FINISHED = ("COMPLETED", "FAILED")
API = "/api/v1/pim"

PRODUCT_COLUMNS = [
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
]
VARIANT_COLUMNS = [
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
]
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


# --- helpers -------------------------------------------------------------------------------


def wait_job(t: Tenant, job_id: str, timeout: float = JOB_TIMEOUT_S) -> dict[str, Any]:
    """Poll the job until it has finished (COMPLETED or FAILED)."""
    deadline = time.monotonic() + timeout
    while True:
        response = t.get(f"/bulk-jobs/{job_id}")
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if job["status"] in FINISHED:
            return job
        assert time.monotonic() < deadline, (
            f"job still {job['status']} after {timeout}s: {job} (a PENDING job may have lost "
            "its message to another pim worker on the same Redis database)"
        )
        time.sleep(0.05)


def submit(t: Tenant, job_type: str, payload: Any, **extra: Any) -> dict[str, Any]:
    """POST /bulk-jobs and check the 202 answer; returns the accepted job."""
    response = t.post("/bulk-jobs", json={"type": job_type, "payload": payload, **extra})
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    assert response.headers["location"] == f"{t.base_url}{API}/bulk-jobs/{job['id']}"
    assert job["type"] == job_type
    return job


def run_job(t: Tenant, job_type: str, payload: Any, **extra: Any) -> dict[str, Any]:
    """Submit a bulk job and wait for it to finish."""
    return wait_job(t, submit(t, job_type, payload, **extra)["id"])


def item_results(t: Tenant, job_id: str) -> list[dict[str, Any]]:
    response = t.get(f"/bulk-jobs/{job_id}/result")
    assert response.status_code == 200, response.text
    # (its Content-Type is wrong: see test_per_item_results_are_served_as_ndjson)
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def export(t: Tenant, body: Any = None) -> tuple[dict[str, Any], httpx.Response]:
    """POST /export, wait for it, and download the file."""
    response = t.post("/export") if body is None else t.post("/export", json=body)
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"{t.base_url}{API}/bulk-jobs/{job['id']}"
    done = wait_job(t, job["id"])
    assert done["status"] == "COMPLETED", done
    result = t.get(f"/bulk-jobs/{job['id']}/result")
    assert result.status_code == 200, result.text
    return done, result


def add_variant(t: Tenant, product_id: str, **fields: Any) -> dict[str, Any]:
    return t.create(f"/products/{product_id}/variants", **fields)


def variants_of(t: Tenant, product_id: str) -> list[dict[str, Any]]:
    response = t.get(f"/products/{product_id}/variants")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def audit(t: Tenant, **params: str) -> list[dict[str, Any]]:
    response = t.get("/audit", params=params)
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()
    return entries


def stats(t: Tenant) -> dict[str, Any]:
    response = t.get("/stats")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def filename_of(response: httpx.Response) -> str:
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment"), disposition
    message = Message()
    message["content-disposition"] = disposition
    name = message.get_param("filename", header="content-disposition")
    assert isinstance(name, str), disposition
    return name


def media_type(response: httpx.Response) -> tuple[str, str | None]:
    """(media type, charset) of a response's Content-Type."""
    message = Message()
    message["content-type"] = response.headers["content-type"]
    charset = message.get_param("charset")
    return message.get_content_type(), charset if isinstance(charset, str) else None


def assert_counts(job: dict[str, Any], total: int, succeeded: int, failed: int) -> None:
    assert job["status"] == "COMPLETED", job
    assert (
        job["total_items"],
        job["processed_items"],
        job["succeeded_items"],
        job["failed_items"],
    ) == (total, total, succeeded, failed), job
    assert job["started_at"] and job["finished_at"] and job["error"] is None
    assert job["result_url"] == f"{API}/bulk-jobs/{job['id']}/result"


def error_fields(result: dict[str, Any]) -> list[str]:
    return [e["field"] for e in result["errors"]]


def _col_index(ref: str) -> int:
    index = 0
    for char in ref:
        if not char.isalpha():
            break
        index = index * 26 + (ord(char.upper()) - 64)
    return index - 1


def xlsx_sheets(data: bytes) -> dict[str, list[list[str]]]:
    """Sheet name -> rows of cell texts, read straight from the OOXML parts."""
    ns = {
        "m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
        "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
        "rel": "http://schemas.openxmlformats.org/package/2006/relationships",
    }
    book = zipfile.ZipFile(io.BytesIO(data))
    shared: list[str] = []
    if "xl/sharedStrings.xml" in book.namelist():
        root = ElementTree.fromstring(book.read("xl/sharedStrings.xml"))
        shared = ["".join(t.text or "" for t in si.iter(f"{{{ns['m']}}}t")) for si in root]
    rels = ElementTree.fromstring(book.read("xl/_rels/workbook.xml.rels"))
    targets = {r.get("Id"): r.get("Target") for r in rels.findall("rel:Relationship", ns)}
    workbook = ElementTree.fromstring(book.read("xl/workbook.xml"))
    sheets: dict[str, list[list[str]]] = {}
    for sheet in workbook.iterfind("m:sheets/m:sheet", ns):
        target = str(targets[sheet.get(f"{{{ns['r']}}}id")]).lstrip("/")
        part = target if target.startswith("xl/") else f"xl/{target}"
        root = ElementTree.fromstring(book.read(part))
        rows: list[list[str]] = []
        for row in root.iterfind("m:sheetData/m:row", ns):
            cells: dict[int, str] = {}
            for cell in row.iterfind("m:c", ns):
                kind = cell.get("t")
                if kind == "inlineStr":
                    text = "".join(t.text or "" for t in cell.iter(f"{{{ns['m']}}}t"))
                else:
                    value = cell.find("m:v", ns)
                    raw = value.text if value is not None and value.text else ""
                    text = shared[int(raw)] if kind == "s" else raw
                cells[_col_index(str(cell.get("r")))] = text
            width = max(cells) + 1 if cells else 0
            rows.append([cells.get(i, "") for i in range(width)])
        sheets[str(sheet.get("name"))] = rows
    return sheets


@pytest.fixture
def catalog(tenant: Tenant) -> dict[str, Any]:
    """Three products (one DRAFT) with variants, a category and an attribute."""
    tenant.category("shoes")
    tenant.attribute("color")
    first = tenant.create_product(
        title="Trail shoe", category="shoes", attributes={"color": "red"}, description="Light"
    )
    second = tenant.create_product(title="Draft boot", status="DRAFT")
    third = tenant.create_product(title="=SUM(A1)")  # formula-like title
    v1 = add_variant(tenant, first["id"], sku="TS-1", price="89.99", currency="USD")
    v2 = add_variant(tenant, first["id"], sku="TS-2", option_values={"size": "M"})
    v3 = add_variant(tenant, second["id"], sku="DB-1", price="100", currency="JPY")
    return {"products": [first, second, third], "variants": [v1, v2, v3]}


# --- export --------------------------------------------------------------------------------


def test_export_without_a_body_is_a_csv_of_every_product(
    tenant: Tenant, catalog: dict[str, Any]
) -> None:
    response = tenant.post("/export")
    assert response.status_code == 202, response.text
    job = response.json()
    uuid.UUID(job["id"])
    assert job["type"] == "EXPORT"
    assert job["status"] in ("PENDING", "PROCESSING", "COMPLETED")
    assert job["dry_run"] is False and job["created_by"] == tenant.subject
    assert response.headers["location"] == f"{tenant.base_url}{API}/bulk-jobs/{job['id']}"
    assert response.headers["ETag"] == f'"{job["version"]}"'
    assert job["updated_at"] and job["position"] is None  # no file yet
    # read your writes: the job's own record is readable at once
    assert tenant.get(f"/bulk-jobs/{job['id']}").status_code == 200

    done = wait_job(tenant, job["id"])
    assert done["status"] == "COMPLETED", done
    assert done["processed_items"] == done["succeeded_items"] == 3 and done["failed_items"] == 0
    assert done["result_url"] == f"{API}/bulk-jobs/{job['id']}/result"
    fetched = tenant.get(f"/bulk-jobs/{job['id']}")
    assert fetched.headers["ETag"] == f'"{done["version"]}"' and done["version"] > job["version"]
    assert done["updated_at"] == done["finished_at"]
    assert datetime.fromisoformat(done["updated_at"]) > datetime.fromisoformat(job["created_at"])
    # the log position the file reflects: every product created before it is at or below it
    last_create = tenant.get("/audit", params={"action": "PRODUCT_CREATED", "limit": 1}).json()
    assert isinstance(done["position"], int) and done["position"] >= last_create[0]["id"]
    result = tenant.get(f"/bulk-jobs/{job['id']}/result")
    assert result.status_code == 200, result.text
    assert media_type(result) == ("text/csv", "utf-8")
    assert filename_of(result) == f"products-{job['id']}.csv"

    rows = list(csv.reader(io.StringIO(result.content.decode("utf-8"))))
    assert rows[0] == PRODUCT_COLUMNS
    by_column = [dict(zip(PRODUCT_COLUMNS, row, strict=True)) for row in rows[1:]]
    products = catalog["products"]
    assert [r["id"] for r in by_column] == [p["id"] for p in products]  # creation order
    first = by_column[0]
    assert first["title"] == "Trail shoe" and first["category"] == "shoes"
    assert first["status"] == "ACTIVE" and json.loads(first["attributes"]) == {"color": "red"}
    assert first["variant_count"] == "2" and first["version"] == "1"
    assert first["created_at"] == products[0]["created_at"]
    assert by_column[1]["status"] == "DRAFT" and by_column[1]["variant_count"] == "1"
    assert by_column[2]["title"] == "'=SUM(A1)"  # neutralised for spreadsheets


def test_ndjson_export_lines_are_the_products_as_the_api_shows_them(
    tenant: Tenant, catalog: dict[str, Any]
) -> None:
    job, result = export(tenant, {"format": "ndjson"})
    assert result.headers["content-type"].startswith("application/x-ndjson")
    assert filename_of(result) == f"products-{job['id']}.ndjson"
    lines = [json.loads(line) for line in result.text.splitlines()]
    assert [line["id"] for line in lines] == [p["id"] for p in catalog["products"]]
    for line in lines:
        expected = tenant.get(f"/products/{line['id']}").json()
        assert {k: v for k, v in line.items() if k != "variants"} == expected
        assert line["variants"] == variants_of(tenant, line["id"])
    assert lines[2]["title"] == "=SUM(A1)"  # NDJSON carries values unchanged


def test_variant_scope_csv_export_has_one_row_per_variant(
    tenant: Tenant, catalog: dict[str, Any]
) -> None:
    job, result = export(tenant, {"format": "csv", "scope": "variants"})
    assert media_type(result) == ("text/csv", "utf-8")
    assert filename_of(result) == f"variants-{job['id']}.csv"
    rows = list(csv.reader(io.StringIO(result.content.decode("utf-8"))))
    assert rows[0] == VARIANT_COLUMNS
    by_column = [dict(zip(VARIANT_COLUMNS, row, strict=True)) for row in rows[1:]]
    assert [r["id"] for r in by_column] == [v["id"] for v in catalog["variants"]]
    assert [r["sku"] for r in by_column] == ["TS-1", "TS-2", "DB-1"]
    assert [r["price"] for r in by_column] == ["89.99", "", "100"]
    assert [r["currency"] for r in by_column] == ["USD", "", "JPY"]
    assert by_column[0]["product_title"] == "Trail shoe"
    assert json.loads(by_column[1]["option_values"]) == {"size": "M"}
    assert job["processed_items"] == 3


def test_xlsx_export_is_a_workbook_with_products_and_variants_sheets(
    tenant: Tenant, catalog: dict[str, Any]
) -> None:
    job, result = export(tenant, {"format": "xlsx"})
    assert result.headers["content-type"] == XLSX_TYPE
    assert filename_of(result) == f"products-{job['id']}.xlsx"
    assert zipfile.is_zipfile(io.BytesIO(result.content))
    sheets = xlsx_sheets(result.content)
    assert list(sheets) == ["products", "variants"]
    products, variants = sheets["products"], sheets["variants"]
    assert products[0] == PRODUCT_COLUMNS and variants[0] == VARIANT_COLUMNS
    assert [row[0] for row in products[1:]] == [p["id"] for p in catalog["products"]]
    assert [row[0] for row in variants[1:]] == [v["id"] for v in catalog["variants"]]
    assert products[3][1] == "'=SUM(A1)"


def test_export_filters_select_products_like_the_products_list(
    tenant: Tenant, catalog: dict[str, Any]
) -> None:
    draft = catalog["products"][1]
    _, result = export(tenant, {"format": "ndjson", "filters": {"status": "DRAFT"}})
    lines = [json.loads(line) for line in result.text.splitlines()]
    assert [line["id"] for line in lines] == [draft["id"]]
    assert [v["sku"] for v in lines[0]["variants"]] == ["DB-1"]

    _, result = export(tenant, {"scope": "variants", "filters": {"category": "shoes"}})
    rows = list(csv.reader(io.StringIO(result.content.decode("utf-8"))))
    assert [row[3] for row in rows[1:]] == ["TS-1", "TS-2"]

    job, result = export(tenant, {"filters": {"q": "nothing matches"}})
    assert result.content.decode("utf-8").splitlines() == [",".join(PRODUCT_COLUMNS)]
    assert job["processed_items"] == 0


@pytest.mark.slow
def test_a_failed_export_says_why_without_internals_and_has_no_file(
    make_database: Any, redis_url: str, tmp_path: Path
) -> None:
    """A service of its own: the failure is logged with its traceback, which the shared
    service's log must not hold."""
    env = own_service_env(make_database(), redis_url, tmp_path)
    service = start_service(env, tmp_path / "serve.log")
    try:
        tenant = Tenant(service.base_url)
        tenant.create_product(title="Unexportable")
        exports = Path(env["PIM_DATA_DIR"]) / "exports"
        exports.mkdir(parents=True)
        (exports / tenant.tenant_id).write_text("a file where the export directory goes")
        response = tenant.post("/export")
        assert response.status_code == 202, response.text
        job = wait_job(tenant, response.json()["id"])
        assert job["status"] == "FAILED" and job["finished_at"], job
        assert "internal error" in job["error"] and str(tmp_path) not in job["error"], job
        assert job["result_url"] is None and job["position"] is None
        # finished, so no longer 409: there is simply nothing to download
        problem = assert_problem(tenant.get(f"/bulk-jobs/{job['id']}/result"), 404)
        assert str(tmp_path) not in problem["detail"]
    finally:
        service.stop()


def test_an_export_of_an_empty_catalog_has_only_the_header(tenant: Tenant) -> None:
    _, result = export(tenant)
    assert result.content.decode("utf-8") == ",".join(PRODUCT_COLUMNS) + "\r\n"
    _, result = export(tenant, {"format": "ndjson"})
    assert result.content == b""


def test_exports_are_listed_as_export_jobs(tenant: Tenant) -> None:
    job, _ = export(tenant, {"format": "ndjson"})
    listed = tenant.get("/bulk-jobs", params={"type": "EXPORT"})
    assert listed.status_code == 200, listed.text
    assert listed.json() == [job]
    assert tenant.get("/bulk-jobs").json() == []  # default type is BULK_UPDATE
    assert tenant.get("/bulk-jobs", params={"type": "EXPORT", "status": "PENDING"}).json() == []


def test_a_csv_export_has_exactly_one_charset(tenant: Tenant) -> None:
    _, result = export(tenant)
    assert result.headers["content-type"] == "text/csv; charset=utf-8"


def test_a_finished_export_counts_its_rows_as_total_items(
    tenant: Tenant, catalog: dict[str, Any]
) -> None:
    job, _ = export(tenant)
    assert job["total_items"] == job["processed_items"] == 3


@pytest.mark.parametrize(
    "body",
    [
        {"format": "pdf"},
        {"scope": "everything"},
        {"filters": {"status": "LIVE"}},
        {"filters": {"status": 1}},
        {"filters": "DRAFT"},
        {"format": "csv", "colour": "red"},
        ["csv"],
    ],
)
def test_bad_export_requests_are_422(tenant: Tenant, body: Any) -> None:
    problem = assert_problem(tenant.post("/export", json=body), 422)
    assert problem["errors"]
    assert tenant.get("/bulk-jobs", params={"type": "EXPORT"}).json() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"format": "csv", "colour": "red"}, "colour"),
        ({"format": 1}, "format"),
        (["csv"], "body"),
    ],
)
def test_export_type_errors_name_the_field(tenant: Tenant, body: Any, field: str) -> None:
    assert_problem(tenant.post("/export", json=body), 422, field)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"format": "pdf"}, "format"),
        ({"scope": "everything"}, "scope"),
        ({"filters": {"status": "LIVE"}}, "filters.status"),
        ({"filters": {"status": 1}}, "filters.status"),
    ],
)
def test_export_value_errors_name_the_field(tenant: Tenant, body: Any, field: str) -> None:
    assert_problem(tenant.post("/export", json=body), 422, field)


def test_an_unknown_export_filter_is_422(tenant: Tenant) -> None:
    response = tenant.post("/export", json={"filters": {"stauts": "DRAFT"}})
    assert response.status_code == 422, response.text


def test_export_body_transport_errors(tenant: Tenant) -> None:
    json_type = {"Content-Type": "application/json"}
    # a body without a content type is read as JSON
    assert_problem(tenant.post("/export", content=b"format=csv"), 400)
    assert_problem(
        tenant.post("/export", content=b"format=csv", headers={"Content-Type": "text/plain"}), 415
    )
    assert_problem(tenant.post("/export", content=b'{"format": ', headers=json_type), 400)
    big = b'{"format": "csv", "filters": {"q": "' + b"a" * (10 * 1024 * 1024 + 1) + b'"}}'
    assert_problem(tenant.post("/export", content=big, headers=json_type), 413)
    assert tenant.get("/bulk-jobs", params={"type": "EXPORT"}).json() == []


def test_a_read_only_token_cannot_start_an_export(tenant: Tenant) -> None:
    token = tenant.token(scopes=["pim:read"])
    response = tenant.post("/export", headers={"Authorization": f"Bearer {token}"})
    assert_problem(response, 403)


# --- bulk update ---------------------------------------------------------------------------


def test_bulk_update_by_ids_sets_fields_and_reports_each_item(tenant: Tenant) -> None:
    tenant.category("boots")
    tenant.attribute("color")
    products = [tenant.create_product(title=f"P{i}") for i in range(3)]
    untouched = tenant.create_product(title="Other")
    ids = [p["id"] for p in products]
    payload = {
        "product_ids": ids,
        "set": {"status": "DRAFT", "category": "boots", "attributes": {"color": "blue"}},
    }
    accepted = submit(tenant, "BULK_UPDATE", payload)
    assert accepted["status"] in ("PENDING", "PROCESSING", "COMPLETED")
    assert accepted["created_by"] == tenant.subject and accepted["dry_run"] is False
    job = wait_job(tenant, accepted["id"])
    assert_counts(job, 3, 3, 0)

    for pid in ids:  # the job's effects are readable once it has completed
        product = tenant.get(f"/products/{pid}").json()
        assert product["status"] == "DRAFT" and product["category"] == "boots"
        assert product["attributes"] == {"color": "blue"} and product["version"] == 2
    assert tenant.get(f"/products/{untouched['id']}").json()["version"] == 1
    listed = tenant.get("/products", params={"status": "DRAFT"}).json()
    assert [p["id"] for p in listed] == ids
    assert stats(tenant)["products_by_status"] == {"ACTIVE": 1, "DRAFT": 3, "ARCHIVED": 0}

    result = tenant.get(f"/bulk-jobs/{job['id']}/result")
    assert filename_of(result) == f"bulk_update-{job['id']}.ndjson"
    assert item_results(tenant, job["id"]) == [
        {"index": i, "id": pid, "status": "SUCCEEDED", "errors": []} for i, pid in enumerate(ids)
    ]
    entries = audit(tenant, entity_id=ids[0], action="PRODUCT_UPDATED")
    assert len(entries) == 1
    assert entries[0]["actor"] == tenant.subject and entries[0]["org_id"] == tenant.org_id
    assert entries[0]["changes"]["status"] == {"from": "ACTIVE", "to": "DRAFT"}


def test_bulk_set_merges_like_a_patch_and_a_no_op_records_nothing(tenant: Tenant) -> None:
    tenant.category("hats")
    tenant.attribute("color")
    tenant.attribute("size")
    merged = tenant.create_product(
        title="Merged", category="hats", attributes={"color": "red", "size": "M"}
    )
    same = tenant.create_product(title="Same", status="DRAFT")
    ids = [merged["id"], same["id"], merged["id"]]  # a repeated id is one item
    job = run_job(
        tenant,
        "BULK_UPDATE",
        {"product_ids": ids, "set": {"status": "DRAFT", "attributes": {"size": None}}},
    )
    assert_counts(job, 2, 2, 0)
    after = tenant.get(f"/products/{merged['id']}").json()
    assert after["attributes"] == {"color": "red"}  # merged key by key, null removes
    assert after["category"] == "hats" and after["status"] == "DRAFT" and after["version"] == 2
    assert tenant.get(f"/products/{same['id']}").json() == same  # nothing to change
    assert audit(tenant, entity_id=same["id"], action="PRODUCT_UPDATED") == []

    job = run_job(tenant, "BULK_UPDATE", {"product_ids": [merged["id"]], "set": {"category": None}})
    assert_counts(job, 1, 1, 0)
    assert tenant.get(f"/products/{merged['id']}").json()["category"] is None


def test_bulk_update_by_filter_changes_only_matching_products(tenant: Tenant) -> None:
    drafts = [tenant.create_product(title=f"D{i}", status="DRAFT") for i in range(2)]
    active = tenant.create_product(title="A")
    job = run_job(
        tenant, "BULK_UPDATE", {"filter": {"status": "DRAFT"}, "set": {"status": "ARCHIVED"}}
    )
    assert_counts(job, 2, 2, 0)
    assert [r["id"] for r in item_results(tenant, job["id"])] == [d["id"] for d in drafts]
    for draft in drafts:
        assert tenant.get(f"/products/{draft['id']}").json()["status"] == "ARCHIVED"
    assert tenant.get(f"/products/{active['id']}").json()["status"] == "ACTIVE"
    assert tenant.get("/products", params={"status": "DRAFT"}).json() == []

    # a filter that matches nothing is a job of no items
    job = run_job(tenant, "BULK_UPDATE", {"filter": {"q": "zzz"}, "set": {"status": "DRAFT"}})
    assert_counts(job, 0, 0, 0)
    assert item_results(tenant, job["id"]) == []


def test_bulk_update_accepts_the_job_type_alias(tenant: Tenant) -> None:
    product = tenant.create_product(title="Alias")
    response = tenant.post(
        "/bulk-jobs",
        json={
            "job_type": "BULK_UPDATE",
            "payload": {"product_ids": [product["id"]], "set": {"status": "ARCHIVED"}},
        },
    )
    assert response.status_code == 202, response.text
    assert response.json()["type"] == "BULK_UPDATE"
    assert_counts(wait_job(tenant, response.json()["id"]), 1, 1, 0)
    assert tenant.get(f"/products/{product['id']}").json()["status"] == "ARCHIVED"


def test_price_changes_round_half_up_to_the_currencys_minor_unit(tenant: Tenant) -> None:
    Prices = list[tuple[str | None, str | None]]
    cases: list[tuple[Prices, dict[str, Any], Prices]] = [  # (prices, change, expected)
        ([("10.00", "USD")], {"op": "multiply", "value": "1.10"}, [("11.00", "USD")]),
        ([("0.05", "USD")], {"op": "multiply", "value": 1.5}, [("0.08", "USD")]),
        ([("100", "JPY")], {"op": "multiply", "value": 1.015}, [("102", "JPY")]),
        ([("1.000", "KWD")], {"op": "multiply", "value": "1.0005"}, [("1.001", "KWD")]),
        ([("100", "JPY")], {"op": "add", "value": "0.5"}, [("101", "JPY")]),
        (
            [("10.00", "USD"), (None, None)],
            {"op": "add", "value": 2.5},
            [("12.50", "USD"), (None, None)],  # add needs a price to start from
        ),
        ([("19.99", "USD")], {"op": "set", "value": 5, "currency": "EUR"}, [("5.00", "EUR")]),
        ([("19.99", "USD")], {"op": "set", "value": "10.005"}, [("10.01", "USD")]),
    ]
    runs: list[tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any], Any, Prices]] = []
    for n, (prices, change, expected) in enumerate(cases):
        product = tenant.create_product(title=f"Priced {n}")
        variants = []
        for m, (price, currency) in enumerate(prices):
            body: dict[str, Any] = {"sku": f"P{n}-{m}"}
            if price is not None:
                body |= {"price": price, "currency": currency}
            variants.append(add_variant(tenant, product["id"], **body))
        job = submit(tenant, "BULK_UPDATE", {"product_ids": [product["id"]], "price": change})
        runs.append((product, variants, job, change, expected))
    for product, variants, job, change, expected in runs:
        assert_counts(wait_job(tenant, job["id"]), 1, 1, 0)
        after = {v["id"]: v for v in variants_of(tenant, product["id"])}
        got = [(after[v["id"]]["price"], after[v["id"]]["currency"]) for v in variants]
        assert got == expected, change
        # a variant price change does not change the product
        assert tenant.get(f"/products/{product['id']}").json()["version"] == 1
    first_variant = runs[0][1][0]
    (entry,) = audit(tenant, entity_id=first_variant["id"], action="VARIANT_UPDATED")
    assert entry["changes"]["price"] == {"from": "10.00", "to": "11.00"}


def test_unknown_and_foreign_ids_fail_per_item_and_leave_the_other_tenant_alone(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    mine = tenant.create_product(title="Mine")
    theirs = other_tenant.create_product(title="Theirs")
    unknown = str(uuid.uuid4())
    job = run_job(
        tenant,
        "BULK_UPDATE",
        {"product_ids": [mine["id"], unknown, theirs["id"]], "set": {"status": "ARCHIVED"}},
    )
    assert_counts(job, 3, 1, 2)
    results = item_results(tenant, job["id"])
    assert [(r["index"], r["id"], r["status"]) for r in results] == [
        (0, mine["id"], "SUCCEEDED"),
        (1, unknown, "FAILED"),
        (2, theirs["id"], "FAILED"),
    ]
    for failed in results[1:]:
        assert failed["errors"][0]["field"] == "id" and failed["errors"][0]["code"] == "not_found"
        assert failed["errors"][0]["message"]
    assert results[1]["errors"] == results[2]["errors"]  # no existence oracle
    kept = other_tenant.get(f"/products/{theirs['id']}").json()
    assert kept["status"] == "ACTIVE" and kept["version"] == 1
    assert audit(other_tenant, action="PRODUCT_UPDATED") == []

    # the same for deletes
    job = run_job(tenant, "BULK_DELETE", {"product_ids": [theirs["id"]]})
    assert_counts(job, 1, 0, 1)
    assert other_tenant.get(f"/products/{theirs['id']}").status_code == 200


def test_an_item_that_fails_validation_fails_alone_with_field_errors(tenant: Tenant) -> None:
    tenant.category("real")
    products = [tenant.create_product(title=f"C{i}") for i in range(2)]
    ids = [p["id"] for p in products]
    job = run_job(tenant, "BULK_UPDATE", {"product_ids": ids, "set": {"category": "no-such"}})
    assert_counts(job, 2, 0, 2)
    for result in item_results(tenant, job["id"]):
        assert result["status"] == "FAILED" and "category" in error_fields(result), result
    assert all(tenant.get(f"/products/{i}").json()["version"] == 1 for i in ids)

    # prices: one product would go negative; it fails whole (no half-made changes), others apply
    ok = tenant.create_product(title="Ok")
    bad = tenant.create_product(title="Bad")
    add_variant(tenant, ok["id"], sku="OK-1", price="20.00", currency="USD")
    add_variant(tenant, bad["id"], sku="BAD-1", price="20.00", currency="USD")
    add_variant(tenant, bad["id"], sku="BAD-2", price="10.00", currency="USD")
    payload = {
        "product_ids": [ok["id"], bad["id"]],
        "set": {"status": "DRAFT"},
        "price": {"op": "add", "value": "-15"},
    }
    job = run_job(tenant, "BULK_UPDATE", payload)
    assert_counts(job, 2, 1, 1)
    first, second = item_results(tenant, job["id"])
    assert first == {"index": 0, "id": ok["id"], "status": "SUCCEEDED", "errors": []}
    assert second["index"] == 1 and second["id"] == bad["id"] and second["status"] == "FAILED"
    assert any(f.endswith("price") for f in error_fields(second)), second
    assert second["errors"][0]["code"] and second["errors"][0]["message"]
    assert [v["price"] for v in variants_of(tenant, ok["id"])] == ["5.00"]
    assert [v["price"] for v in variants_of(tenant, bad["id"])] == ["20.00", "10.00"]
    bad_now = tenant.get(f"/products/{bad['id']}").json()
    assert bad_now["status"] == "ACTIVE" and bad_now["version"] == 1
    assert audit(tenant, entity_id=bad["id"], action="PRODUCT_UPDATED") == []


@pytest.mark.parametrize("where", ["top", "payload"])
def test_a_dry_run_reports_results_and_changes_nothing(tenant: Tenant, where: str) -> None:
    products = [tenant.create_product(title=f"Dry {i}") for i in range(2)]
    variant = add_variant(tenant, products[0]["id"], sku="DRY-1", price="10.00", currency="USD")
    ids = [p["id"] for p in products]
    products = [tenant.get(f"/products/{pid}").json() for pid in ids]
    payload: dict[str, Any] = {
        "product_ids": [*ids, str(uuid.uuid4())],
        "set": {"status": "ARCHIVED"},
        "price": {"op": "multiply", "value": 2},
    }
    extra: dict[str, Any] = {"dry_run": True} if where == "top" else {}
    if where == "payload":
        payload["dry_run"] = True
    before = stats(tenant)
    accepted = submit(tenant, "BULK_UPDATE", payload, **extra)
    assert accepted["dry_run"] is True
    job = wait_job(tenant, accepted["id"])
    assert_counts(job, 3, 2, 1)
    assert job["dry_run"] is True
    results = item_results(tenant, job["id"])
    assert [r["status"] for r in results] == ["SUCCEEDED", "SUCCEEDED", "FAILED"]
    for product in products:
        assert tenant.get(f"/products/{product['id']}").json() == product
    assert variants_of(tenant, products[0]["id"]) == [variant]
    assert audit(tenant, action="PRODUCT_UPDATED") == []
    assert audit(tenant, action="VARIANT_UPDATED") == []
    assert stats(tenant) == before

    job = run_job(tenant, "BULK_DELETE", {"product_ids": ids}, dry_run=True)
    assert_counts(job, 2, 2, 0)
    assert all(tenant.get(f"/products/{i}").status_code == 200 for i in ids)
    assert audit(tenant, action="PRODUCT_DELETED") == []


def test_jobs_are_idempotent_with_an_idempotency_key(tenant: Tenant) -> None:
    product = tenant.create_product(title="Once")
    body = {
        "type": "BULK_UPDATE",
        "payload": {"product_ids": [product["id"]], "set": {"status": "DRAFT"}},
    }
    key = {"Idempotency-Key": f"bulk-{uuid.uuid4()}"}
    first = tenant.post("/bulk-jobs", json=body, headers=key)
    second = tenant.post("/bulk-jobs", json=body, headers=key)
    assert first.status_code == second.status_code == 202, second.text
    assert first.json()["id"] == second.json()["id"]
    wait_job(tenant, first.json()["id"])
    assert [j["id"] for j in tenant.get("/bulk-jobs").json()] == [first.json()["id"]]


# --- bulk delete ---------------------------------------------------------------------------


def test_bulk_delete_by_ids_removes_products_and_their_variants(tenant: Tenant) -> None:
    doomed = [tenant.create_product(title=f"Gone {i}") for i in range(2)]
    kept = tenant.create_product(title="Kept")
    variants = [
        add_variant(tenant, doomed[0]["id"], sku="G-1", price="1.00", currency="USD"),
        add_variant(tenant, doomed[0]["id"], sku="G-2", price="2.00", currency="USD"),
        add_variant(tenant, kept["id"], sku="K-1", price="3.00", currency="USD"),
    ]
    assert stats(tenant)["total_products"] == 3 and stats(tenant)["total_variants"] == 3
    ids = [p["id"] for p in doomed]
    job = run_job(tenant, "BULK_DELETE", {"product_ids": ids})
    assert_counts(job, 2, 2, 0)
    assert item_results(tenant, job["id"]) == [
        {"index": i, "id": pid, "status": "SUCCEEDED", "errors": []} for i, pid in enumerate(ids)
    ]
    for pid in ids:
        assert tenant.get(f"/products/{pid}").status_code == 404
    for variant in variants[:2]:
        response = tenant.get(f"/products/{doomed[0]['id']}/variants/{variant['id']}")
        assert response.status_code == 404
    assert [p["id"] for p in tenant.get("/products").json()] == [kept["id"]]
    after = stats(tenant)
    assert after["total_products"] == 1 and after["total_variants"] == 1
    assert after["products_by_status"]["ACTIVE"] == 1

    deleted = {e["entity_id"] for e in audit(tenant, action="PRODUCT_DELETED")}
    assert deleted == set(ids)
    gone_variants = {e["entity_id"] for e in audit(tenant, action="VARIANT_DELETED")}
    assert gone_variants == {variants[0]["id"], variants[1]["id"]}
    assert all(e["actor"] == tenant.subject for e in audit(tenant, action="PRODUCT_DELETED"))

    # deleting again: each item is now not found
    job = run_job(tenant, "BULK_DELETE", {"product_ids": ids})
    assert_counts(job, 2, 0, 2)


def test_bulk_delete_by_filter(tenant: Tenant) -> None:
    archived = [tenant.create_product(title=f"Old {i}", status="ARCHIVED") for i in range(3)]
    add_variant(tenant, archived[1]["id"], sku="OLD-1")
    live = tenant.create_product(title="Live")
    job = run_job(tenant, "BULK_DELETE", {"filter": {"status": "ARCHIVED"}})
    assert_counts(job, 3, 3, 0)
    assert [p["id"] for p in tenant.get("/products").json()] == [live["id"]]
    counts = stats(tenant)
    assert counts["total_products"] == 1 and counts["total_variants"] == 0
    assert counts["products_by_status"] == {"ACTIVE": 1, "DRAFT": 0, "ARCHIVED": 0}
    assert len(audit(tenant, action="PRODUCT_DELETED")) == 3
    assert len(audit(tenant, action="VARIANT_DELETED")) == 1


def test_an_unknown_key_in_a_bulk_filter_is_422(tenant: Tenant) -> None:
    response = tenant.post(
        "/bulk-jobs",
        json={"type": "BULK_DELETE", "payload": {"filter": {"stauts": "DRAFT"}}, "dry_run": True},
    )
    assert_problem(response, 422, "payload.filter.stauts")


# --- bulk import ---------------------------------------------------------------------------


def test_bulk_import_creates_products_with_variants_item_by_item(tenant: Tenant) -> None:
    tenant.category("bags")
    existing = tenant.create_product(title="Existing")
    add_variant(tenant, existing["id"], sku="TAKEN", price="1.00", currency="USD")
    items: list[Any] = [
        {
            "title": "Backpack",
            "category": "bags",
            "status": "DRAFT",
            "variants": [
                {
                    "sku": "BP-1",
                    "price": "49.90",
                    "currency": "EUR",
                    "option_values": {"size": "L"},
                },
                {"sku": "BP 2"},  # accepted, reported: INVALID_SKU and MISSING_PRICE
            ],
        },
        {"title": ""},
        {"title": "Bad sku", "variants": [{"sku": " x"}]},
        {"title": "Lonely"},  # NO_VARIANTS
        {"title": "First dup", "variants": [{"sku": "DUP-1", "price": 5, "currency": "USD"}]},
        {"title": "Second dup", "variants": [{"sku": "DUP-1", "price": 6, "currency": "USD"}]},
        {"title": "Taken", "variants": [{"sku": "TAKEN"}]},
        {"title": "Unknown category", "category": "nope"},
        {"title": "Colour", "colour": "red"},
        {"title": "Bad variants", "variants": {"sku": "V"}},
        {"title": "Numeric variants", "variants": 5},  # fails alone, not the job
    ]
    job = run_job(tenant, "BULK_IMPORT", {"products": items})
    assert_counts(job, len(items), 3, len(items) - 3)
    results = item_results(tenant, job["id"])
    assert [r["index"] for r in results] == list(range(len(items)))
    status = [r["status"] for r in results]
    assert status == ["SUCCEEDED", "FAILED", "FAILED", "SUCCEEDED", "SUCCEEDED"] + ["FAILED"] * 6
    assert "title" in error_fields(results[1])
    assert "variants[0].sku" in error_fields(results[2])
    assert results[5]["errors"][0]["code"] == "conflict"  # the second DUP-1
    assert "DUP-1" in results[5]["errors"][0]["message"]
    assert error_fields(results[5]) == ["variants[0].sku"]
    assert results[6]["errors"][0]["code"] == "conflict"  # sku of an existing product
    assert error_fields(results[6]) == ["variants[0].sku"]
    assert "category" in error_fields(results[7])
    assert "colour" in error_fields(results[8])
    assert "variants" in error_fields(results[9])
    assert "variants" in error_fields(results[10])
    assert all(r["id"] is None for r in results if r["status"] == "FAILED")

    created = [r["id"] for r in results if r["status"] == "SUCCEEDED"]
    listed = tenant.get("/products").json()
    assert [p["id"] for p in listed] == [existing["id"], *created]
    backpack = tenant.get(f"/products/{created[0]}").json()
    assert backpack["title"] == "Backpack" and backpack["category"] == "bags"
    assert backpack["status"] == "DRAFT" and backpack["variant_count"] == 2
    variants = variants_of(tenant, created[0])
    assert [(v["sku"], v["price"], v["currency"]) for v in variants] == [
        ("BP-1", "49.90", "EUR"),
        ("BP 2", None, None),
    ]
    assert variants[0]["option_values"] == {"size": "L"}
    assert [v["sku"] for v in variants_of(tenant, created[2])] == ["DUP-1"]
    assert {e["entity_id"] for e in audit(tenant, action="PRODUCT_CREATED")} == {
        existing["id"],
        *created,
    }

    counts = stats(tenant)
    assert counts["total_products"] == 4 and counts["total_variants"] == 4
    assert counts["products_by_status"] == {"ACTIVE": 3, "DRAFT": 1, "ARCHIVED": 0}
    issues = tenant.get("/validation").json()
    by_code = {(i["code"], i["product_id"]) for i in issues}
    assert ("INVALID_SKU", created[0]) in by_code
    assert ("MISSING_PRICE", created[0]) in by_code
    assert ("NO_VARIANTS", created[1]) in by_code
    assert counts["validation_issues"] == len(issues)


def test_an_import_larger_than_a_batch_keeps_item_order_and_counts(tenant: Tenant) -> None:
    items: list[dict[str, Any]] = [{"title": f"Bulk {i:04d}"} for i in range(530)]
    items[510] = {"title": "   "}
    job = run_job(tenant, "BULK_IMPORT", {"products": items})
    assert_counts(job, 530, 529, 1)
    results = item_results(tenant, job["id"])
    assert [r["index"] for r in results] == list(range(530))
    assert [r["status"] for r in results].count("FAILED") == 1
    assert results[510]["status"] == "FAILED" and "title" in error_fields(results[510])
    assert stats(tenant)["total_products"] == 529
    first = tenant.get("/products", params={"limit": 1}).json()
    assert first[0]["title"] == "Bulk 0000" and first[0]["id"] == results[0]["id"]


def test_per_item_results_are_served_as_ndjson(tenant: Tenant) -> None:
    job = run_job(tenant, "BULK_IMPORT", {"products": [{"title": "One"}, {"title": "Two"}]})
    response = tenant.get(f"/bulk-jobs/{job['id']}/result")
    assert response.status_code == 200
    assert filename_of(response) == f"bulk_import-{job['id']}.ndjson"
    assert len(response.text.splitlines()) == 2
    assert media_type(response)[0] == "application/x-ndjson"


def test_an_empty_import_completes_with_no_items(tenant: Tenant) -> None:
    job = run_job(tenant, "BULK_IMPORT", {"products": []})
    assert_counts(job, 0, 0, 0)
    assert item_results(tenant, job["id"]) == []


def test_the_result_is_409_until_the_job_has_finished(tenant: Tenant) -> None:
    job = submit(tenant, "BULK_IMPORT", {"products": [{"title": f"R{i}"} for i in range(300)]})
    early = tenant.get(f"/bulk-jobs/{job['id']}/result")
    if early.status_code == 409:
        assert_problem(early, 409)
    else:  # the job beat us to it
        assert early.status_code == 200
        assert tenant.get(f"/bulk-jobs/{job['id']}").json()["status"] in FINISHED
    assert_counts(wait_job(tenant, job["id"]), 300, 300, 0)
    assert len(item_results(tenant, job["id"])) == 300


# --- lists and isolation -------------------------------------------------------------------


def test_job_lists_filter_by_type_and_status_and_page_with_a_cursor(tenant: Tenant) -> None:
    product = tenant.create_product(title="Listed")
    updates = [
        submit(tenant, "BULK_UPDATE", {"product_ids": [product["id"]], "set": {"status": s}})
        for s in ("DRAFT", "ARCHIVED", "ACTIVE")
    ]
    delete = submit(tenant, "BULK_DELETE", {"product_ids": [str(uuid.uuid4())]})
    for job in [*updates, delete]:
        wait_job(tenant, job["id"])

    listed = tenant.get("/bulk-jobs")
    assert listed.status_code == 200 and "link" not in listed.headers
    assert [j["id"] for j in listed.json()] == [u["id"] for u in updates]  # oldest first
    assert all(j["type"] == "BULK_UPDATE" for j in listed.json())
    deletes = tenant.get("/bulk-jobs", params={"type": "BULK_DELETE"}).json()
    assert [j["id"] for j in deletes] == [delete["id"]]
    assert deletes[0]["failed_items"] == 1 and deletes[0]["status"] == "COMPLETED"
    alias = tenant.get("/bulk-jobs", params={"job_type": "BULK_DELETE"}).json()
    assert [j["id"] for j in alias] == [delete["id"]]
    completed = tenant.get("/bulk-jobs", params={"status": "COMPLETED"}).json()
    assert [j["id"] for j in completed] == [u["id"] for u in updates]
    assert tenant.get("/bulk-jobs", params={"status": "PROCESSING"}).json() == []
    assert tenant.get("/bulk-jobs", params={"type": "BULK_IMPORT"}).json() == []

    seen: list[str] = []
    url: str | None = f"{tenant.base_url}{API}/bulk-jobs?limit=1"
    while url is not None:
        page = tenant.get(url)
        assert page.status_code == 200, page.text
        assert len(page.json()) <= 1
        seen += [j["id"] for j in page.json()]
        url = page.links.get("next", {}).get("url")
        if url is not None:
            assert page.headers["link"].endswith('rel="next"')
            url = str(httpx.URL(tenant.base_url).join(url))
    assert seen == [u["id"] for u in updates]


@pytest.mark.parametrize(
    "params",
    [
        {"type": "BULK_NUKE"},
        {"type": "bulk_update"},
        {"status": "DONE"},
        {"status": "completed"},
        {"limit": "0"},
        {"limit": "101"},
        {"cursor": "not-a-cursor"},
    ],
)
def test_bad_list_parameters_are_400(tenant: Tenant, params: dict[str, str]) -> None:
    assert_problem(tenant.get("/bulk-jobs", params=params), 400)


def test_another_tenants_jobs_are_invisible(tenant: Tenant, other_tenant: Tenant) -> None:
    product = tenant.create_product(title="Private")
    job = run_job(
        tenant, "BULK_UPDATE", {"product_ids": [product["id"]], "set": {"status": "DRAFT"}}
    )
    exported, _ = export(tenant)
    for jid in (job["id"], exported["id"]):
        assert_problem(other_tenant.get(f"/bulk-jobs/{jid}"), 404)
        assert_problem(other_tenant.get(f"/bulk-jobs/{jid}/result"), 404)
    for job_type in ("BULK_UPDATE", "EXPORT"):
        assert other_tenant.get("/bulk-jobs", params={"type": job_type}).json() == []
    for path in (
        "/bulk-jobs/not-a-uuid",
        f"/bulk-jobs/{uuid.uuid4()}",
        f"/bulk-jobs/{uuid.uuid4()}/result",
    ):
        assert_problem(tenant.get(path), 404)
    assert tenant.get(f"/bulk-jobs/{job['id']}").status_code == 200


# --- bad input at creation -----------------------------------------------------------------

IDS = [str(uuid.uuid4())]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "BULK_NUKE", "payload": {"product_ids": IDS}}, "type"),
        ({"job_type": "BULK_NUKE", "payload": {"product_ids": IDS}}, "type"),
        ({"type": 5, "payload": {}}, "type"),
        ({"payload": {"product_ids": IDS, "set": {"status": "DRAFT"}}}, "type"),
        ({"type": "BULK_UPDATE"}, "payload"),
        ({"type": "BULK_UPDATE", "payload": None}, "payload"),
        ({"type": "BULK_UPDATE", "payload": [1]}, "payload"),
        ({"type": "BULK_UPDATE", "payload": "ids"}, "payload"),
        ({"type": "BULK_UPDATE", "payload": {"product_ids": IDS}, "colour": 1}, "colour"),
        ({"type": "BULK_DELETE", "payload": {"product_ids": IDS}, "dry_run": "yes"}, "dry_run"),
        (
            {"type": "BULK_UPDATE", "payload": {"product_ids": IDS, "set": {"colour": "red"}}},
            "payload.set.colour",
        ),
        (
            {"type": "BULK_UPDATE", "payload": {"product_ids": IDS, "set": {"status": "LIVE"}}},
            "payload.set.status",
        ),
        (
            {"type": "BULK_UPDATE", "payload": {"product_ids": IDS, "set": {"brand_id": "x"}}},
            "payload.set.brand_id",
        ),
        (
            {"type": "BULK_UPDATE", "payload": {"product_ids": IDS, "set": []}},
            "payload.set",
        ),
        ({"type": "BULK_UPDATE", "payload": {"product_ids": IDS}}, "payload.set"),
        (
            {
                "type": "BULK_UPDATE",
                "payload": {"product_ids": IDS, "filter": {}, "set": {"status": "DRAFT"}},
            },
            "payload.product_ids",
        ),
        (
            {"type": "BULK_UPDATE", "payload": {"set": {"status": "DRAFT"}}},
            "payload.product_ids",
        ),
        (
            {
                "type": "BULK_UPDATE",
                "payload": {"product_ids": ["nope"], "set": {"status": "DRAFT"}},
            },
            "payload.product_ids[0]",
        ),
        (
            {"type": "BULK_UPDATE", "payload": {"product_ids": "all", "set": {"status": "DRAFT"}}},
            "payload.product_ids",
        ),
        (
            {
                "type": "BULK_UPDATE",
                "payload": {"filter": {"status": "LIVE"}, "set": {"status": "DRAFT"}},
            },
            "payload.filter.status",
        ),
        (
            {
                "type": "BULK_UPDATE",
                "payload": {"product_ids": IDS, "price": {"op": "divide", "value": 2}},
            },
            "payload.price.op",
        ),
        (
            {
                "type": "BULK_UPDATE",
                "payload": {"product_ids": IDS, "price": {"op": "add", "value": "abc"}},
            },
            "payload.price.value",
        ),
        (
            {"type": "BULK_UPDATE", "payload": {"product_ids": IDS, "price": {"op": "add"}}},
            "payload.price.value",
        ),
        (
            {
                "type": "BULK_UPDATE",
                "payload": {
                    "product_ids": IDS,
                    "price": {"op": "add", "value": 1, "currency": "XYZ"},
                },
            },
            "payload.price.currency",
        ),
        (
            {
                "type": "BULK_UPDATE",
                "payload": {"product_ids": IDS, "price": {"op": "set", "value": "-5"}},
            },
            "payload.price.value",
        ),
        (
            {
                "type": "BULK_DELETE",
                "job_type": "BULK_UPDATE",
                "payload": {"product_ids": IDS, "set": {"status": "DRAFT"}},
            },
            "job_type",
        ),
        ({"type": "BULK_DELETE", "payload": {}}, "payload.product_ids"),
        (
            {"type": "BULK_DELETE", "payload": {"product_ids": IDS, "set": {"status": "DRAFT"}}},
            "payload.set",
        ),
        ({"type": "BULK_IMPORT", "payload": {}}, "payload.products"),
        ({"type": "BULK_IMPORT", "payload": {"products": {"title": "x"}}}, "payload.products"),
        ({"type": "BULK_IMPORT", "payload": {"products": [], "extra": 1}}, "payload.extra"),
        ({"type": "BULK_IMPORT", "payload": {"products": [{}, "x"]}}, "payload.products[1]"),
        ([{"type": "BULK_UPDATE"}], "body"),
    ],
)
def test_bad_job_requests_are_422_naming_the_field(tenant: Tenant, body: Any, field: str) -> None:
    problem = assert_problem(tenant.post("/bulk-jobs", json=body), 422, field)
    assert problem["errors"][0]["code"] and problem["errors"][0]["message"]
    for job_type in ("BULK_UPDATE", "BULK_DELETE", "BULK_IMPORT", "EXPORT"):
        assert tenant.get("/bulk-jobs", params={"type": job_type}).json() == []


def test_job_body_transport_errors(tenant: Tenant) -> None:
    json_type = {"Content-Type": "application/json"}
    for raw in (b"{bad json", b'{"type": "BULK_UPDATE"', b"\xff\xfe", b""):
        assert_problem(tenant.post("/bulk-jobs", content=raw, headers=json_type), 400)
    assert_problem(
        tenant.post(
            "/bulk-jobs", content=b"type=BULK_UPDATE", headers={"Content-Type": "text/plain"}
        ),
        415,
    )
    big = json.dumps(
        {"type": "BULK_IMPORT", "payload": {"products": [{"title": "x" * 200}] * 60_000}}
    ).encode()
    assert len(big) > 10 * 1024 * 1024
    assert_problem(tenant.post("/bulk-jobs", content=big, headers=json_type), 413)
    token = tenant.token(scopes=["pim:read"])
    response = tenant.post(
        "/bulk-jobs",
        json={"type": "BULK_DELETE", "payload": {"product_ids": IDS}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert_problem(response, 403)
    assert tenant.get("/bulk-jobs", params={"type": "BULK_IMPORT"}).json() == []


def test_an_unrepresentable_price_change_is_refused(tenant: Tenant) -> None:
    product = tenant.create_product(title="Priced")
    add_variant(
        tenant, product["id"], sku=f"INF-{uuid.uuid4().hex[:8]}", price="10.00", currency="USD"
    )
    for change in (
        {"op": "multiply", "value": "Infinity"},
        {"op": "set", "value": 1e30},
        {"op": "add", "value": "NaN"},
    ):
        response = tenant.post(
            "/bulk-jobs",
            json={
                "type": "BULK_UPDATE",
                "payload": {"product_ids": [product["id"]], "price": change},
            },
        )
        assert_problem(response, 422, "payload.price.value")
    assert [v["price"] for v in variants_of(tenant, product["id"])] == ["10.00"]


# --- webhooks ------------------------------------------------------------------------------


@dataclass
class Received:
    headers: Message
    body: bytes


@dataclass
class Receiver:
    requests: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for(self, count: int, timeout: float = JOB_TIMEOUT_S) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.requests)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state.requests.append(Received(self.headers, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.server = server
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    server.shutdown()
    server.server_close()


def register_webhook(t: Tenant, url: str, events: list[str], secret: str) -> dict[str, Any]:
    response = t.post("/webhooks", json={"url": url, "events": events, "secret": secret})
    if response.status_code in (404, 405):
        pytest.skip(f"/webhooks is not mounted yet (POST /webhooks -> {response.status_code})")
    assert response.status_code == 201, response.text
    hook: dict[str, Any] = response.json()
    return hook


def test_finished_jobs_notify_webhooks_with_signed_events(
    tenant: Tenant, other_tenant: Tenant, receiver: Receiver
) -> None:
    secret = "whsec-" + uuid.uuid4().hex
    hook = register_webhook(
        tenant, receiver.url, ["export.completed", "bulk_job.completed"], secret
    )
    # another tenant's webhook on the same receiver hears nothing of this tenant's jobs
    register_webhook(other_tenant, receiver.url, ["export.completed", "bulk_job.completed"], secret)
    product = tenant.create_product(title="Hooked")

    exported, _ = export(tenant, {"format": "ndjson"})
    updated = run_job(
        tenant,
        "BULK_UPDATE",
        {"product_ids": [product["id"], str(uuid.uuid4())], "set": {"status": "DRAFT"}},
    )
    received = receiver.wait_for(2)
    time.sleep(0.3)  # anything extra (another tenant's, duplicates) would arrive meanwhile
    assert len(receiver.requests) == 2, [r.body for r in receiver.requests]

    by_event = {r.headers["X-PIM-Event"]: r for r in received}
    assert set(by_event) == {"export.completed", "bulk_job.completed"}
    for event_type, job in (("export.completed", exported), ("bulk_job.completed", updated)):
        request = by_event[event_type]
        expected = "sha256=" + hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(request.headers["X-PIM-Signature"], expected)
        assert request.headers["Content-Type"].startswith("application/json")
        uuid.UUID(request.headers["X-PIM-Delivery"])
        event = json.loads(request.body)
        assert set(event) == {"id", "type", "created_at", "data"}
        assert event["type"] == event_type and event["created_at"]
        data = event["data"]
        assert data["job_id"] == job["id"] and data["status"] == "COMPLETED"
        assert data["type"] == job["type"]
        assert data["result_url"] == f"{API}/bulk-jobs/{job['id']}/result"
    bulk_data = json.loads(by_event["bulk_job.completed"].body)["data"]
    assert (
        bulk_data["total_items"],
        bulk_data["processed_items"],
        bulk_data["succeeded_items"],
        bulk_data["failed_items"],
    ) == (2, 2, 1, 1)

    deadline = time.monotonic() + 10
    while True:
        deliveries = tenant.get(f"/webhooks/{hook['id']}/deliveries").json()
        if all(d["status"] == "DELIVERED" for d in deliveries) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(deliveries) == 2
    assert {d["status"] for d in deliveries} == {"DELIVERED"}
    assert {d["event_type"] for d in deliveries} == set(by_event)
    assert {d["id"] for d in deliveries} == {r.headers["X-PIM-Delivery"] for r in received}
    assert all(d["attempts"] == 1 and d["last_status_code"] == 204 for d in deliveries)


def test_a_webhook_hears_only_the_events_it_subscribed_to(
    tenant: Tenant, receiver: Receiver
) -> None:
    hook = register_webhook(tenant, receiver.url, ["bulk_job.completed"], "s" * 32)
    export(tenant)
    job = run_job(tenant, "BULK_IMPORT", {"products": [{"title": "Heard"}]})
    (request,) = receiver.wait_for(1)
    time.sleep(0.3)
    assert len(receiver.requests) == 1
    assert request.headers["X-PIM-Event"] == "bulk_job.completed"
    assert json.loads(request.body)["data"]["job_id"] == job["id"]
    assert [d["event_type"] for d in tenant.get(f"/webhooks/{hook['id']}/deliveries").json()] == [
        "bulk_job.completed"
    ]


def test_a_large_import_keeps_every_read_model_exact(tenant: Tenant) -> None:
    """Regression: projector batches of many new products with priced variants once made the
    validation projection read a stale pipeline result and stall the read models."""
    products = [
        {
            "title": f"Bulk {i}",
            "variants": [
                {"sku": f"LRG-{tenant.tenant_id[:8]}-{i}-{v}", "price": "5.00", "currency": "EUR"}
                for v in range(3)
            ],
        }
        for i in range(1000)
    ]
    created = tenant.post(
        "/bulk-jobs", json={"type": "BULK_IMPORT", "payload": {"products": products}}
    )
    assert created.status_code == 202, created.text
    job = wait_job(tenant, created.json()["id"], timeout=120)
    assert job["status"] == "COMPLETED" and job["succeeded_items"] == 1000, job
    stats = tenant.get("/stats").json()
    assert stats["total_products"] == 1000 and stats["total_variants"] == 3000
    assert stats["validation_issues"] == 0
    update = tenant.post(
        "/bulk-jobs",
        json={"type": "BULK_UPDATE", "payload": {"filter": {}, "set": {"status": "DRAFT"}}},
    )
    updated = wait_job(tenant, update.json()["id"], timeout=120)
    assert updated["total_items"] == updated["succeeded_items"] == 1000, updated
    assert tenant.get("/stats").json()["products_by_status"]["DRAFT"] == 1000
