"""The OpenAPI 3.1 document: litestar describes routes and responses; this module adds what it
cannot see because bodies are decoded strictly by hand (request schemas from msgspec), plus the
identity headers and bearer security every API route requires."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from litestar import Request, Router
from litestar.datastructures import CacheControlHeader
from litestar.enums import MediaType
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin, OpenAPIRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    Operation,
    Reference,
    RequestBody,
    SecurityScheme,
)
from litestar.static_files import create_static_files_router

from pim.api.parameters import QUERY_PARAMETERS, UUID_PATTERN, singular
from pim.api.problems import PROBLEM_MEDIA_TYPE, Problem
from pim.domain.registry import RESOURCE_TYPES
from pim.jobs.domain import JOB_STATUSES, JobView
from pim.jobs.kinds import BULK_TYPES, EXPORT, JOB_KINDS
from pim.jobs.payloads import BulkJobInput, ExportInput

API_PREFIX = "/api/v1/pim"
_REQUEST_BODIES: dict[str, type[msgspec.Struct]] = {}
Param = dict[str, Any]


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


def _header(name: str, schema: dict[str, Any], description: str, *, required: bool) -> Param:
    return {"name": name, "in": "header", "required": required, "description": description,
            "schema": schema}  # fmt: skip


# Plain strings (a pattern, no "format: uuid"): a generated client passes them as they are.
_UUID_STRING = {"type": "string", "pattern": UUID_PATTERN}


def read_operation(operation_id: str, summary: str) -> dict[str, Any]:
    """The OpenAPI arguments of a read route: its id, summary and documented problems."""
    return {"operation_id": operation_id, "summary": summary, "responses": READ_RESPONSES}


_IDENTITY_PARAMETERS = [
    _header(
        "X-Tenant-ID", _UUID_STRING, "The tenant (must equal the token's tenant_id)", required=True
    ),
    _header(
        "X-Org-ID",
        _UUID_STRING,
        "The acting organization (must be in the token's org_ids)",
        required=True,
    ),
]
_IDEMPOTENCY_PARAMETER = _header(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"},
    "Replays the first answer to this key for 24 h (per tenant)",
    required=False,
)
_IF_MATCH_PARAMETER = _header(
    "If-Match",
    {"type": "string", "pattern": '^(\\*|[0-9]{1,18}|"[0-9]{1,18}")$'},
    'The version the change is meant for, as its entity tag ("3"; 3 and * also accepted);'
    " 412 when the resource has moved on",
    required=False,
)


def _response_header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "schema": schema or {"type": "string"}}


_REQUEST_ID = _response_header("The request's id (also in logs and the audit entry)")
_ETAG = _response_header('The resource\'s version as an entity tag ("3")')
_LOCATION = _response_header("URL of the created resource", {"type": "string", "format": "uri"})
_LINK = _response_header('The next page: <url>; rel="next" (absent on the last page)')
_REPLAYED = _response_header(
    "true when this is the recorded answer to an earlier request with the same Idempotency-Key",
    {"type": "string", "enum": ["true"]},
)
_VIEWS_BEHIND = _response_header(
    "true when the write committed but lists and reads may not show it yet",
    {"type": "string", "enum": ["true"]},
)
_CONTENT_DISPOSITION = _response_header('attachment; filename="..."')
_RETRY_AFTER = _response_header("Seconds to wait before retrying", {"type": "integer"})
_UNAVAILABLE = {
    "description": "A dependency (PostgreSQL, Redis) is unavailable; retry after Retry-After",
    "headers": {"Retry-After": _RETRY_AFTER},
    "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
}
# Typed read-only metadata a body may carry back as it was read (ignored).
_READ_ONLY: dict[str, dict[str, Any]] = {
    "id": {"type": "string", "format": "uuid"},
    "version": {"type": "integer", "minimum": 1},
    "created_at": {"type": "string", "format": "date-time"},
    "updated_at": {"type": "string", "format": "date-time"},
    "variant_count": {"type": "integer", "minimum": 0},
}
_DOWNLOADS = {
    "application/x-ndjson": "Per-item results of a bulk job, one JSON object per line",
    "text/csv": "An export as CSV (UTF-8)",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "An export as XLSX",
}


def _components(doc: dict[str, Any]) -> dict[str, Any]:
    schemas: dict[str, Any] = doc.setdefault("components", {}).setdefault("schemas", {})
    _, request_schemas = msgspec.json.schema_components(
        [*_REQUEST_BODIES.values(), *(k.payload for k in JOB_KINDS.values())],
        ref_template="#/components/schemas/{name}",
    )
    schemas.update(request_schemas)
    for schema in request_schemas.values():
        for name, prop in schema.get("properties", {}).items():
            if prop == {}:  # typed Any: metadata a body may carry back as read (ignored)
                schema["properties"][name] = {**_READ_ONLY.get(name, {}), "readOnly": True}
    # A job's payload: one schema per kind (the kind is the sibling "type").
    bulk = schemas.get(BulkJobInput.__name__)
    if bulk is not None:
        bulk["properties"]["payload"] = {
            "oneOf": [
                {"$ref": f"#/components/schemas/{k.payload.__name__}"}
                for k in JOB_KINDS.values()
                if k.route == "bulk-jobs"
            ],
            "description": "The payload of the job's type",
        }
        for key in ("type", "job_type"):
            bulk["properties"][key] = {
                "anyOf": [{"type": "string", "enum": list(BULK_TYPES)}, {"type": "null"}],
                "default": None,
            }
    export = schemas.get(ExportInput.__name__)
    if export is not None:
        for key, prop in schemas[EXPORT.payload.__name__]["properties"].items():
            export["properties"][key] = prop
    job = schemas.get(JobView.__name__)
    if job is not None:
        job["properties"]["type"] = {"type": "string", "enum": list(JOB_KINDS)}
        job["properties"]["status"] = {"type": "string", "enum": list(JOB_STATUSES)}
    # Creates: the resource's input with the fields a create needs marked required.
    for r in RESOURCE_TYPES:
        source = schemas.get(r.input.__name__)
        if source is None or not r.required:
            continue
        create = copy.deepcopy(source)
        create["title"] = f"{singular(r)}Create"
        create["required"] = list(r.required)
        for name in r.required:  # null is refused on create
            prop = create["properties"][name]
            if "anyOf" in prop:
                prop["anyOf"] = [a for a in prop["anyOf"] if a.get("type") != "null"]
                if len(prop["anyOf"]) == 1:
                    create["properties"][name] = {**prop["anyOf"][0]}
            prop.pop("default", None)
            create["properties"][name].pop("default", None)
        schemas[f"{singular(r)}Create"] = create
    return schemas


def _operation(path: str, method: str, operation: dict[str, Any], schemas: dict[str, Any]) -> None:
    op_id = operation.get("operationId", "")
    params = operation.setdefault("parameters", [])
    params.extend(copy.deepcopy(QUERY_PARAMETERS.get(op_id, [])))
    params.extend(copy.deepcopy(_IDENTITY_PARAMETERS))
    for param in params:  # ids in paths: UUIDs
        if param.get("in") == "path":
            param["schema"] = {"type": "string", "format": "uuid"}
    if method == "post":
        params.append(dict(_IDEMPOTENCY_PARAMETER))
    if method in ("put", "patch", "delete"):
        params.append(dict(_IF_MATCH_PARAMETER))
    operation["security"] = [{"bearer": []}]
    responses: dict[str, Any] = operation.setdefault("responses", {})
    responses.setdefault("503", copy.deepcopy(_UNAVAILABLE))
    for status, response in responses.items():
        headers = response.setdefault("headers", {})
        headers["X-Request-ID"] = _REQUEST_ID
        if not status.startswith("2"):
            continue
        if op_id.startswith("list"):
            headers["Link"] = _LINK
        if method == "post":
            headers["Idempotent-Replayed"] = _REPLAYED
        if method in ("post", "put", "patch") and status != "204":
            headers["X-PIM-Views-Behind"] = _VIEWS_BEHIND
            if op_id.startswith(("create", "replace", "update", "revert")):
                headers["ETag"] = _ETAG
        if status in ("201", "202"):
            headers["Location"] = _LOCATION
        if method == "get" and not op_id.startswith("list") and "{" in path:
            headers["ETag"] = _ETAG
    if op_id == "getBulkJobResult":
        ok = responses["200"]
        ok.pop("headers", None)
        ok["headers"] = {"X-Request-ID": _REQUEST_ID, "Content-Disposition": _CONTENT_DISPOSITION}
        ok["content"] = {
            media: {"schema": {"type": "string", "format": "binary"}, "description": text}
            for media, text in _DOWNLOADS.items()
        }
        ok["description"] = "The result file: per-item NDJSON (bulk jobs) or the export file"
        for code, reason in (
            ("409", "The job has not finished yet"),
            ("410", "The export file is no longer available"),
        ):
            responses[code] = {
                "description": reason,
                "content": {
                    PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}
                },
            }
    create = f"{op_id.removeprefix('create')}Create"
    if op_id.startswith("create") and create in schemas:
        body = operation["requestBody"]["content"]["application/json"]
        body["schema"] = {"$ref": f"#/components/schemas/{create}"}


def complete(schema: dict[str, Any]) -> dict[str, Any]:
    """The document litestar generated, completed with what it cannot see (see above)."""
    doc = copy.deepcopy(schema)
    schemas = _components(doc)
    for path, item in doc.get("paths", {}).items():
        if not path.startswith(API_PREFIX):
            continue
        for method, operation in item.items():
            if isinstance(operation, dict) and method != "parameters":
                _operation(path, method, operation, schemas)
    return doc


# The document litestar generates is built once per app; so is its completion. (source, done)
_completed: list[tuple[dict[str, Any], dict[str, Any]]] = []


def completed(schema: dict[str, Any]) -> dict[str, Any]:
    """``complete(schema)``, computed once for the app's document, not on every request."""
    for source, done in _completed:
        if source is schema:
            return done
    done = complete(schema)
    _completed[:] = [(schema, done)]
    return done


class CompletedJsonRenderPlugin(JsonRenderPlugin):
    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return self.render_json(request, completed(openapi_schema))


class CompletedYamlRenderPlugin(YamlRenderPlugin):
    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return super().render(request, completed(openapi_schema))


# The interactive reference's assets ship with the service (no CDN): see static/.../VERSION.txt.
SWAGGER_UI_DIR = Path(__file__).parent / "static" / "swagger-ui"
ASSETS_PATH = "/schema/assets"


class ReferencePage(OpenAPIRenderPlugin):
    """The interactive API reference (Swagger UI): the completed document, read from
    /schema/openapi.json, rendered with assets this service ships."""

    def __init__(self) -> None:
        super().__init__(path="/", media_type=MediaType.HTML)

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>PIM API reference</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="{ASSETS_PATH}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{ASSETS_PATH}/swagger-ui-bundle.js"></script>
  <script src="{ASSETS_PATH}/swagger-ui-standalone-preset.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{
      url: "/schema/openapi.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: "StandaloneLayout",
    }});
  </script>
</body>
</html>
""".encode()


def docs_assets() -> Router:
    """The static files of the interactive reference, public like the document itself."""
    return create_static_files_router(
        path=ASSETS_PATH,
        directories=[SWAGGER_UI_DIR],
        include_in_schema=False,
        cache_control=CacheControlHeader(max_age=86400),
    )


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="PIM API",
        version="1.0.0",
        description="Multi-tenant, event-sourced Product Information Management API.",
        path="/schema",
        render_plugins=[
            ReferencePage(),
            CompletedJsonRenderPlugin(),
            CompletedYamlRenderPlugin(),
        ],
        components=Components(
            security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
            }
        ),
    )
