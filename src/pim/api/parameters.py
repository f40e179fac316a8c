"""The query parameters of every operation, for the OpenAPI document, derived from the same
declarations the handlers parse them with: the resource types' list filters, the product and
audit filters, the job kinds and statuses, the validation codes. Handlers read parameters
from the query string themselves (so a malformed one is a problem naming it); this table is
how clients learn them."""

from __future__ import annotations

from typing import Any

from pim.domain.product import PRODUCT_STATUSES
from pim.domain.registry import ACTIONS, ENTITY_TYPES, RESOURCE_TYPES
from pim.domain.resource import ListFilter, ResourceType
from pim.domain.rules import SLUG_PATTERN
from pim.domain.validation import SEVERITY
from pim.jobs.domain import JOB_STATUSES
from pim.jobs.kinds import BULK_TYPES
from pim.queries.pages import DEFAULT_LIMIT, MAX_LIMIT

Parameter = dict[str, Any]
UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


def query(name: str, schema: dict[str, Any], description: str) -> Parameter:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}  # fmt: skip


UUID = {"type": "string", "format": "uuid"}
# Positions and versions: the integers the service parses (18 digits, queries/pages.py).
MAX_NATURAL = 10**18 - 1
DATE_TIME = {"type": "string", "format": "date-time"}

PAGE: list[Parameter] = [
    query(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        "Items per page",
    ),
    query(
        "cursor",
        {"type": "string", "minLength": 1},
        "Opaque cursor from the previous page's Link header (rel=next)",
    ),
]


def list_filter(declared: ListFilter, label: str) -> Parameter:
    schema: dict[str, Any] = {"type": "string", "minLength": 1}
    if declared.kind == "uuid":
        schema = dict(UUID)
    elif declared.kind == "choice":
        schema = {"type": "string", "enum": list(declared.choices)}
    return query(declared.name, schema, f"Only {label}s whose {declared.name} equals this")


PRODUCT_FILTERS: list[Parameter] = [
    query("status", {"type": "string", "enum": list(PRODUCT_STATUSES)}, "Only this status"),
    query(
        "category",
        {"type": "string", "pattern": SLUG_PATTERN.pattern},
        "Only products in the category with this slug",
    ),
    query("brand_id", UUID, "Only products of this brand"),
    query("template_id", UUID, "Only products using this template"),
    query("q", {"type": "string", "maxLength": 255}, "Title contains this (any case)"),
    query("updated_since", DATE_TIME, "Only products changed at or after this time (RFC 3339)"),
]

TIME_TRAVEL: list[Parameter] = [
    query(
        "version",
        {"type": "integer", "minimum": 1, "maximum": MAX_NATURAL},
        "The resource right after this version (read from the log); not with as_of",
    ),
    query("as_of", DATE_TIME, "The resource as it was at this time (RFC 3339); not with version"),
]

AUDIT_FILTERS: list[Parameter] = [
    query(
        "entity_type",
        {"type": "string", "enum": sorted(ENTITY_TYPES)},
        "Only events of this resource type (any case)",
    ),
    query("entity_id", UUID, "Only events of this resource"),
    query("action", {"type": "string", "enum": sorted(ACTIONS)}, "Only this action (any case)"),
    query("actor", {"type": "string", "minLength": 1, "maxLength": 255}, "Only this actor"),
    query("since", DATE_TIME, "Only events at or after this time (RFC 3339)"),
    query("until", DATE_TIME, "Only events before this time (RFC 3339)"),
]

EVENTS_AFTER = query(
    "after",
    {"type": "integer", "minimum": 0, "maximum": MAX_NATURAL, "default": 0},
    "Continue after this log position (the last one processed)",
)

VALIDATION_FILTERS: list[Parameter] = [
    query("product_id", UUID, "Only issues of this product"),
    query("variant_id", UUID, "Only issues of this variant"),
    query("code", {"type": "string", "enum": list(SEVERITY)}, "Only issues with this code"),
    query("severity", {"type": "string", "enum": ["ERROR", "WARNING"]}, "Only this severity"),
]

JOB_FILTERS: list[Parameter] = [
    query(
        "type",
        {"type": "string", "enum": [*BULK_TYPES, "EXPORT"], "default": "BULK_UPDATE"},
        "Jobs of this type",
    ),
    query("status", {"type": "string", "enum": list(JOB_STATUSES)}, "Only jobs in this status"),
]


def singular(resource: ResourceType) -> str:
    """A resource type's name in operation ids: getAttributeGroup."""
    return "".join(part.title() for part in resource.entity_type.split("_"))


def plural(resource: ResourceType) -> str:
    """The name of its collection in operation ids: listCategories, listMedia."""
    return "".join(part.title() for part in resource.collection.split("-"))


def resource_parameters() -> dict[str, list[Parameter]]:
    out: dict[str, list[Parameter]] = {}
    for r in RESOURCE_TYPES:
        filters = [list_filter(f, r.label) for f in r.filters]
        if r.read_model == "products":
            filters = PRODUCT_FILTERS
        out[f"list{plural(r)}"] = [*PAGE, *filters]
        if r.time_travel:
            out[f"get{singular(r)}"] = TIME_TRAVEL
    return out


QUERY_PARAMETERS: dict[str, list[Parameter]] = {
    **resource_parameters(),
    "listAuditEntries": [*PAGE, *AUDIT_FILTERS],
    "listEvents": [EVENTS_AFTER, PAGE[0], *AUDIT_FILTERS],
    "listValidationIssues": [*PAGE, *VALIDATION_FILTERS],
    "listBulkJobs": [*PAGE, *JOB_FILTERS],
    "listWebhooks": PAGE,
    "listWebhookDeliveries": PAGE,
}
