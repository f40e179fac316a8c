"""Exports and bulk jobs: /api/v1/pim/export, /api/v1/pim/bulk-jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
from anyio import to_thread
from litestar import Controller, Response, get, post
from litestar.response import File, Stream

from pim.api import http
from pim.api.bodies import decode_body
from pim.api.openapi import READ_RESPONSES, WRITE_RESPONSES, body_of
from pim.api.problems import ApiError
from pim.commands.messages import SubmitJob, new_id
from pim.domain.errors import FieldError, NotFound, ValidationFailed
from pim.jobs.domain import JobView
from pim.jobs.kinds import BULK_TYPES, EXPORT, JOB_KINDS, typed_payload
from pim.jobs.payloads import BulkJobInput, ExportInput
from pim.queries.pages import parse_limit


async def _accept(
    request: http.AnyRequest, job_type: str, payload: msgspec.Struct, dry_run: bool
) -> Response[JobView]:
    """Record the job through the command bus (its creation event is the only record);
    answer 202 once its own record is readable. The dispatcher queues its work."""
    ctx, services = http.context_of(request), http.services_of(request)
    job_id = new_id()
    location = http.resource_url(request, "bulk-jobs", job_id)
    command = SubmitJob(
        ctx.actor,
        job_type,
        msgspec.to_builtins(payload),
        dry_run=dry_run,
        job_id=job_id,
        answer=http.answer_for(request, 202, Location=location),
    )
    outcome = await to_thread.run_sync(services.bus.handle, command)
    http.recorded(request, outcome.position)
    if services.job_queue is not None:  # a shortcut: the dispatcher queues it anyway
        await to_thread.run_sync(services.job_queue.send, ctx.tenant_id, job_id)
    return http.respond_outcome(outcome, 202, Location=location)


class JobsController(Controller):
    path = "/"
    tags = ["Jobs"]

    @post(
        "/export",
        status_code=202,
        responses=WRITE_RESPONSES,
        summary="Start an export",
        operation_class=body_of(ExportInput),
        operation_id="createExport",
    )
    async def export(self, request: http.AnyRequest) -> Response[JobView]:
        data = decode_body(
            await request.body(), request.headers.get("content-type"), ExportInput, required=False
        )
        payload = msgspec.to_builtins(data) if data is not None else {}
        return await _accept(request, EXPORT.name, typed_payload(EXPORT.name, payload), False)

    @post(
        "/bulk-jobs",
        status_code=202,
        responses=WRITE_RESPONSES,
        summary="Start a bulk job",
        operation_class=body_of(BulkJobInput),
        operation_id="createBulkJob",
    )
    async def create_job(self, request: http.AnyRequest) -> Response[JobView]:
        data = decode_body(await request.body(), request.headers.get("content-type"), BulkJobInput)
        assert data is not None
        if data.type is not None and data.job_type is not None and data.type != data.job_type:
            raise ValidationFailed(
                [FieldError("job_type", "conflict", "names another type than type; send one")]
            )
        job_type = data.type or data.job_type
        if job_type is None:
            raise ValidationFailed([FieldError("type", "required", "is required")])
        if job_type not in BULK_TYPES:
            raise ValidationFailed(
                [
                    FieldError(
                        "type",
                        "invalid_choice",
                        f"must be one of {', '.join(BULK_TYPES)}"
                        " (exports are started with POST /export)",
                    )
                ]
            )
        if data.payload is None:
            raise ValidationFailed([FieldError("payload", "required", "must be an object")])
        typed = typed_payload(job_type, data.payload, prefix="payload")
        dry_run = data.dry_run or bool(getattr(typed, "dry_run", False))
        return await _accept(request, job_type, typed, dry_run)

    @get("/bulk-jobs", responses=READ_RESPONSES, summary="List jobs", operation_id="listBulkJobs")
    async def list_jobs(self, request: http.AnyRequest) -> Response[list[JobView]]:
        params = http.query_params(request)
        items, cursor = await http.reads_of(request).jobs.list(
            http.context_of(request).tenant_id,
            limit=parse_limit(params.get("limit")),
            cursor=params.get("cursor"),
            params=params,
        )
        return Response(items, headers=http.next_link(request, cursor))

    @get(
        "/bulk-jobs/{job_id:str}",
        responses=READ_RESPONSES,
        summary="Get a job",
        operation_id="getBulkJob",
    )
    async def get_job(self, request: http.AnyRequest, job_id: str) -> Response[JobView]:
        found = await http.reads_of(request).jobs.get(
            http.context_of(request).tenant_id, http.path_uuid(job_id, "job")
        )
        if found is None:
            raise NotFound("job not found")
        return http.respond(found[0], 200)

    @get(
        "/bulk-jobs/{job_id:str}/result",
        responses=READ_RESPONSES,
        summary="Download a finished job's result (export file or per-item NDJSON)",
        operation_id="getBulkJobResult",
        media_type="application/x-ndjson",  # the export branch sets its own type
    )
    async def result(self, request: http.AnyRequest, job_id: str) -> Any:
        tenant_id = http.context_of(request).tenant_id
        jid = http.path_uuid(job_id, "job")
        found = await http.reads_of(request).jobs.get(tenant_id, jid)
        if found is None:
            raise NotFound("job not found")
        view, result = found
        if view.status not in ("COMPLETED", "FAILED"):
            raise ApiError(
                409,
                f"the job is {view.status}; its result is ready when it has finished",
                slug="job-not-finished",
            )
        if JOB_KINDS[view.type].result == "file":
            if view.status == "FAILED" or not result:
                # finished, and there is nothing to download (its record says why)
                raise ApiError(404, "the export failed and wrote no file", slug="no-result")
            path = Path(result["path"])
            if not await anyio.Path(path).exists():
                raise ApiError(410, "the export file is no longer available", slug="gone")
            # File adds "; charset=utf-8" to text types itself.
            media_type = result["content_type"].split(";")[0].strip()
            return File(path=path, filename=result["filename"], media_type=media_type)

        async def lines() -> AsyncIterator[bytes]:
            async for line in http.reads_of(request).jobs.item_results(tenant_id, jid):
                yield line

        filename = f"{view.type.lower()}-{view.id}.ndjson"
        return Stream(
            lines(),
            media_type="application/x-ndjson",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
