"""Property-based contract test: schemathesis generates requests from the live OpenAPI
document (every operation, stateful sequences included) and checks every answer against it:
documented status codes, content types, response headers and body schemas, no 5xx, auth
enforced, deleted resources gone. Bounded in examples so the suite stays fast."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, Service, Tenant

pytestmark = pytest.mark.slow
SCHEMATHESIS = Path(sys.executable).with_name("st")


def test_the_service_conforms_to_its_openapi_document(service: Service, tenant: Tenant) -> None:
    headers = tenant.headers()
    # Positive mode: requests the schema allows. (Negative requests are not run: the API
    # ignores unknown query parameters, which the OpenAPI document cannot express.)
    result = subprocess.run(
        [
            str(SCHEMATHESIS),
            "--config-file", str(ROOT / "tests" / "schemathesis.toml"),
            "run", f"{service.base_url}/schema/openapi.json",
            "--mode", "positive",
            "--checks", "all",
            "--max-examples", "15",
            "--workers", "2",
            "--seed", "1",
            "--no-color",
            *(arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")),
        ],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-8000:]
    summary = output.split("SUMMARY")[-1]
    assert "Failures:" not in summary and "passed" in summary, output[-4000:]
