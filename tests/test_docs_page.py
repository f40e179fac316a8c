"""The API reference works offline: the page, its assets and the document are served by the
service itself (no CDN), as JSON and YAML, and a real headless browser renders every
operation. (``make docs-check`` installs Chromium if needed and insists on the browser.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import httpx
import pytest
import yaml

from tests.conftest import Service

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def test_the_reference_page_and_its_assets_are_served_locally(service: Service) -> None:
    page = httpx.get(f"{service.base_url}/schema")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    # Nothing is loaded from anywhere else: no absolute URL in the page.
    assert not re.findall(r"https?://", page.text), page.text
    for asset in re.findall(r'(?:src|href)="(/schema/assets/[^"]+)"', page.text):
        response = httpx.get(f"{service.base_url}{asset}")
        assert response.status_code == 200, asset
        assert len(response.content) > 1000, asset
    as_json = httpx.get(f"{service.base_url}/schema/openapi.json").json()
    as_yaml = yaml.safe_load(httpx.get(f"{service.base_url}/schema/openapi.yaml").text)
    assert as_yaml == as_json
    assert "X-Tenant-ID" in {
        p["name"] for p in as_yaml["paths"]["/api/v1/pim/brands"]["get"]["parameters"]
    }


def test_a_headless_browser_renders_every_operation(service: Service) -> None:
    browser = next((b for b in map(shutil.which, BROWSERS) if b), None)
    if browser is None:
        if os.environ.get("PIM_REQUIRE_BROWSER"):
            pytest.fail("no Chromium found (make docs-check installs it)")
        pytest.skip("no headless browser on this machine (make docs-check installs Chromium)")
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
         "--dump-dom", f"{service.base_url}/schema"],
        capture_output=True, text=True, timeout=120, check=False,
    ).stdout  # fmt: skip
    document = httpx.get(f"{service.base_url}/schema/openapi.json").json()
    operation_ids = {
        op["operationId"]
        for item in document["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
    }
    rendered = set(re.findall(r'href="#/[^/"]+/([A-Za-z]+)"', dom))
    assert operation_ids <= rendered, sorted(operation_ids - rendered)
