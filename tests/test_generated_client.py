"""The OpenAPI document is good enough to generate a working client from: the test generates
a Python client with openapi-python-client from the live /schema/openapi.json (the commands
the README shows) and drives a round trip through it: create, read, update with If-Match,
paginate with cursor, filter, history and as-of reads, the change feed, an export download."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from pim.auth.tokens import mint_token
from tests.conftest import JWT_SECRET, ROOT, Service, Tenant

pytestmark = pytest.mark.slow
GENERATOR = Path(sys.executable).with_name("openapi-python-client")
CONFIG = ROOT / "docs" / "clients" / "openapi-python-client.yaml"
PACKAGE = "pim_generated_client"


@pytest.fixture(scope="module")
def client_package(service: Service, tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    work = tmp_path_factory.mktemp("client")
    schema = work / "openapi.json"
    schema.write_bytes(httpx.get(f"{service.base_url}/schema/openapi.json").content)
    env = {**os.environ, "PATH": f"{GENERATOR.parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(schema), "--meta", "none",
         "--config", str(CONFIG), "--output-path", str(work / PACKAGE)],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    # Every operation made it into the client (a warning means one was skipped).
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(work))
    try:
        return importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(work))


def api(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.api.{name}")


def model(name: str) -> Any:
    return getattr(importlib.import_module(f"{PACKAGE}.models"), name)


def next_cursor(response: Any) -> str | None:
    link = response.headers.get("link")
    if not link:
        return None
    url = link.split(";")[0].strip("<> ")
    return parse_qs(urlsplit(url).query)["cursor"][0]


def test_a_generated_client_round_trip(client_package: ModuleType, tenant: Tenant) -> None:
    token = mint_token(
        JWT_SECRET,
        tenant_id=tenant.tenant_id,
        org_ids=[tenant.org_id],
        scopes=["pim:read", "pim:write"],
        subject="sdk-user",
        email=None,
    )
    client = client_package.AuthenticatedClient(
        base_url=tenant.base_url, token=token, raise_on_unexpected_status=True
    )
    ids = {"x_tenant_id": tenant.tenant_id, "x_org_id": tenant.org_id}

    # create (with an Idempotency-Key) and read
    created = api("categories.create_category").sync_detailed(
        client=client, body=model("CategoryCreate")(name="Shoes", slug="shoes"), **ids
    )
    assert created.status_code == 201, created.content
    product_create = api("products.create_product")
    made = product_create.sync_detailed(
        client=client,
        body=model("ProductCreate")(title="Trail runner", category="shoes"),
        idempotency_key="sdk-create-1",
        **ids,
    )
    assert made.status_code == 201, made.content
    product = made.parsed
    assert product.title == "Trail runner" and product.version == 1
    assert made.headers["etag"] == '"1"'
    again = product_create.sync_detailed(
        client=client,
        body=model("ProductCreate")(title="Trail runner", category="shoes"),
        idempotency_key="sdk-create-1",
        **ids,
    )
    assert again.headers["idempotent-replayed"] == "true"
    assert again.parsed.id == product.id

    read = api("products.get_product").sync(product.id, client=client, **ids)
    assert read.title == "Trail runner" and read.category == "shoes"

    # update with If-Match; a stale one is 412, parsed as a problem
    update = api("products.update_product")
    patched = update.sync_detailed(
        product.id,
        client=client,
        body=model("ProductInput")(description="Grippy"),
        if_match='"1"',
        **ids,
    )
    assert patched.status_code == 200, patched.content
    assert patched.parsed.version == 2 and patched.parsed.description == "Grippy"
    stale = update.sync_detailed(
        product.id,
        client=client,
        body=model("ProductInput")(description="Lost"),
        if_match='"1"',
        **ids,
    )
    assert stale.status_code == 412
    assert stale.parsed.status == 412

    # paginate with cursor, filter
    for name in ("Acme", "Brio", "Cobalt"):
        api("brands.create_brand").sync(client=client, body=model("BrandCreate")(name=name), **ids)
    list_brands = api("brands.list_brands")
    first = list_brands.sync_detailed(client=client, limit=2, **ids)
    assert [b.name for b in first.parsed] == ["Acme", "Brio"]
    cursor = next_cursor(first)
    assert cursor is not None
    rest = list_brands.sync_detailed(client=client, limit=2, cursor=cursor, **ids)
    assert [b.name for b in rest.parsed] == ["Cobalt"]
    assert next_cursor(rest) is None
    found = api("products.list_products").sync(client=client, q="trail", **ids)
    assert [p.id for p in found] == [product.id]
    status_enum = model("ListProductsStatus")
    assert (
        api("products.list_products").sync(client=client, status=status_enum("ARCHIVED"), **ids)
        == []
    )

    # history and as-of reads
    history = api("products.get_product_history").sync(product.id, client=client, **ids)
    assert [h.version for h in history] == [1, 2]
    first_version = api("products.get_product").sync(product.id, client=client, version=1, **ids)
    assert first_version.description is None and first_version.version == 1
    as_of = api("products.get_product").sync(
        product.id, client=client, as_of=history[0].occurred_at, **ids
    )
    assert as_of.version == 1

    # follow the change feed
    feed = api("change_feed.list_events")
    events = feed.sync_detailed(client=client, after=0, limit=3, **ids)
    assert len(events.parsed) == 3
    more = feed.sync_detailed(client=client, after=events.parsed[-1].position, **ids)
    assert more.parsed and more.parsed[0].position > events.parsed[-1].position

    # export and download
    job = api("jobs.create_export").sync(client=client, body=model("ExportInput")(), **ids)
    deadline = time.monotonic() + 60
    while job.status not in ("COMPLETED", "FAILED") and time.monotonic() < deadline:
        time.sleep(0.2)
        job = api("jobs.get_bulk_job").sync(job.id, client=client, **ids)
    assert job.status == "COMPLETED", job
    download = api("jobs.get_bulk_job_result").sync(job.id, client=client, **ids)
    assert b"Trail runner" in download.payload.read()
