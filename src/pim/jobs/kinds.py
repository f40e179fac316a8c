"""Every kind of job, declared once: its name, the payload it is submitted with (checked at
submission, 422 naming the field), where clients submit it, what its result is and, for a
job that works through items, the function that lists them and applies one. The API, the
runner, the jobs view and the OpenAPI document all read this table; a new kind of job is one
more entry (its payload in jobs/payloads.py, its items in jobs/bulk.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from pim.domain.context import Actor
from pim.domain.decoding import convert_strict
from pim.jobs.bulk import BulkItems, delete_items, import_items, update_items
from pim.jobs.payloads import (
    BulkDeletePayload,
    BulkImportPayload,
    BulkUpdatePayload,
    ExportPayload,
    check_payload,
)


@dataclass(frozen=True)
class JobKind:
    name: str
    payload: type[msgspec.Struct]
    # "items": one NDJSON result line per item (the items it reached, even when it failed);
    # "file": one file (none when it failed).
    result: Literal["items", "file"]
    # Where clients start it: POST /bulk-jobs (with "type") or POST /export.
    route: Literal["bulk-jobs", "export"]
    # An "items" job's work: (actor, job id, typed payload, the selected product ids) -> the
    # items and how to apply each one in a batch. A payload that selects products by filter
    # or ids (a ``Selection``) has them resolved once, when the job starts.
    items: Callable[[Actor, str, Any, Sequence[str]], BulkItems] | None = None


BULK_UPDATE = JobKind("BULK_UPDATE", BulkUpdatePayload, "items", "bulk-jobs", update_items)
BULK_DELETE = JobKind("BULK_DELETE", BulkDeletePayload, "items", "bulk-jobs", delete_items)
BULK_IMPORT = JobKind("BULK_IMPORT", BulkImportPayload, "items", "bulk-jobs", import_items)
EXPORT = JobKind("EXPORT", ExportPayload, "file", "export")

JOB_KINDS: dict[str, JobKind] = {k.name: k for k in (BULK_UPDATE, BULK_DELETE, BULK_IMPORT, EXPORT)}
JOB_TYPES: tuple[str, ...] = tuple(JOB_KINDS)
BULK_TYPES: tuple[str, ...] = tuple(k.name for k in JOB_KINDS.values() if k.route == "bulk-jobs")


def result_url(job_id: object, job_type: str, status: str) -> str | None:
    """Where a job's result is downloaded, once it has one: a finished job, except a failed
    one whose result is a file (it wrote none); a failed bulk job has the results of the
    items it reached. The job resource and its webhook events both say this."""
    kind = JOB_KINDS.get(job_type)
    if status == "COMPLETED" or (
        status == "FAILED" and kind is not None and kind.result == "items"
    ):
        return f"/api/v1/pim/bulk-jobs/{job_id}/result"
    return None


def typed_payload(job_type: str, payload: dict[str, Any], *, prefix: str = "") -> msgspec.Struct:
    """A submitted payload, typed and checked (ValidationFailed naming ``prefix.field``)."""
    typed = convert_strict(payload, JOB_KINDS[job_type].payload, prefix=prefix)
    check_payload(typed)
    return typed
