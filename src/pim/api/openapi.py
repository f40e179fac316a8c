"""The OpenAPI 3.1 document: litestar describes routes and responses; this module adds what it
cannot see because bodies are decoded strictly by hand (request schemas from msgspec), plus the
identity headers and bearer security every API route requires."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin, ScalarRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    Operation,
    Reference,
    RequestBody,
    SecurityScheme,
)

from pim.api.problems import PROBLEM_MEDIA_TYPE, Problem

API_PREFIX = "/api/v1/pim"
_REQUEST_BODIES: dict[str, type[msgspec.Struct]] = {}


def body_of(struct: type[msgspec.Struct]) -> type[Operation]:
    """An Operation class whose request body is ``struct`` (JSON)."""
    _REQUEST_BODIES[struct.__name__] = struct

    @dataclass
    class WithBody(Operation):
        def __post_init__(self) -> None:
            self.request_body = RequestBody(
                content={
                    "application/json": OpenAPIMediaType(
                        schema=Reference(ref=f"#/components/schemas/{struct.__name__}")
                    )
                },
                required=True,
            )

    return WithBody


def _problem(description: str) -> ResponseSpec:
    return ResponseSpec(
        Problem, description=description, media_type=PROBLEM_MEDIA_TYPE, generate_examples=False
    )


_COMMON = {
    400: _problem("Malformed request: bad header, query parameter or JSON"),
    401: _problem("Missing, malformed, expired or badly signed token"),
    403: _problem("Token does not grant this tenant, organization or scope"),
    404: _problem("No such resource for this tenant"),
}
READ_RESPONSES: dict[int, ResponseSpec] = dict(_COMMON)
WRITE_RESPONSES: dict[int, ResponseSpec] = {
    **_COMMON,
    409: _problem("Conflict: a unique key is taken, or the Idempotency-Key is in flight"),
    412: _problem("If-Match names a version that is no longer current"),
    413: _problem("Body larger than 10 MiB"),
    415: _problem("Body is not application/json"),
    422: _problem("Field-level validation errors"),
}

_IDENTITY_PARAMETERS = [
    {
        "name": "X-Tenant-ID",
        "in": "header",
        "required": True,
        "description": "The tenant (must equal the token's tenant_id)",
        "schema": {"type": "string", "format": "uuid"},
    },
    {
        "name": "X-Org-ID",
        "in": "header",
        "required": True,
        "description": "The acting organization (must be in the token's org_ids)",
        "schema": {"type": "string", "format": "uuid"},
    },
]
_IDEMPOTENCY_PARAMETER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Replays the first response for 24 h (per tenant)",
    "schema": {"type": "string", "maxLength": 255},
}
_IF_MATCH_PARAMETER = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "description": 'Entity tag "<version>"; 412 when stale',
    "schema": {"type": "string"},
}


def complete(schema: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(schema)
    _, components = msgspec.json.schema_components(
        list(_REQUEST_BODIES.values()), ref_template="#/components/schemas/{name}"
    )
    doc.setdefault("components", {}).setdefault("schemas", {}).update(components)
    for path, item in doc.get("paths", {}).items():
        if not path.startswith(API_PREFIX):
            continue
        for method, operation in item.items():
            if not isinstance(operation, dict) or method == "parameters":
                continue
            params = operation.setdefault("parameters", [])
            params.extend(copy.deepcopy(_IDENTITY_PARAMETERS))
            if method == "post":
                params.append(dict(_IDEMPOTENCY_PARAMETER))
            if method in ("put", "patch", "delete"):
                params.append(dict(_IF_MATCH_PARAMETER))
            operation["security"] = [{"bearer": []}]
    return doc


class CompletedJsonRenderPlugin(JsonRenderPlugin):
    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return self.render_json(request, complete(openapi_schema))


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="PIM API",
        version="1.0.0",
        description="Multi-tenant, event-sourced Product Information Management API.",
        path="/schema",
        render_plugins=[ScalarRenderPlugin(path="/"), CompletedJsonRenderPlugin()],
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
            }
        ),
    )
