"""Stats and validation issues: /api/v1/pim/stats, /api/v1/pim/validation."""

from __future__ import annotations

from litestar import Controller, Response, get

from pim.api.http import AnyRequest, context_of, next_link, query_params, reads_of
from pim.api.openapi import read_operation
from pim.queries.insights import Stats, ValidationIssue
from pim.queries.pages import parse_limit


class InsightsController(Controller):
    path = "/"
    tags = ["Insights"]

    @get("/stats", **read_operation("getStats", "Exact catalog counts (constant time)"))
    async def stats(self, request: AnyRequest) -> Stats:
        return await reads_of(request).insights.stats(context_of(request).tenant_id)

    @get(
        "/validation",
        **read_operation("listValidationIssues", "Live validation issues, oldest first"),
    )
    async def validation(self, request: AnyRequest) -> Response[list[ValidationIssue]]:
        params = query_params(request)
        items, cursor = await reads_of(request).insights.issues(
            context_of(request).tenant_id,
            limit=parse_limit(params.get("limit")),
            cursor=params.get("cursor"),
            params=params,
        )
        return Response(items, headers=next_link(request, cursor))
