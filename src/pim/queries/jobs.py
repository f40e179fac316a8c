"""Read-side queries over the jobs view, and per-item results read from the catalog log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any
from uuid import UUID

import msgspec
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from pim.eventstore import EVENTS_TABLE, EventStore
from pim.jobs.domain import JOB_STATUSES, JobView
from pim.jobs.kinds import JOB_KINDS, JOB_TYPES, result_url
from pim.jobs.progress import JobProgress, progress_id
from pim.queries.pages import CreatedKey, InvalidQuery, keyset_page

_COLUMNS = sql.SQL(
    "id, type, status, dry_run, total_items, processed_items, succeeded_items, failed_items,"
    " created_at, started_at, finished_at, created_by, error, result, version,"
    " COALESCE(updated_at, finished_at, started_at, created_at)"
)


def _to_view(row: tuple[Any, ...]) -> tuple[JobView, dict[str, Any] | None]:
    (
        job_id,
        job_type,
        status,
        dry_run,
        total,
        processed,
        succeeded,
        failed,
        created_at,
        started_at,
        finished_at,
        created_by,
        error,
        result,
        version,
        updated_at,
    ) = row
    file_result = job_type in JOB_KINDS and JOB_KINDS[job_type].result == "file"
    position = result.get("position") if file_result and result else None
    view = JobView(
        id=job_id,
        type=job_type,
        status=status,
        dry_run=dry_run,
        total_items=total,
        processed_items=processed,
        succeeded_items=succeeded,
        failed_items=failed,
        created_at=created_at,
        started_at=started_at,
        finished_at=finished_at,
        created_by=created_by,
        error=error,
        result_url=result_url(job_id, job_type, status),
        position=position,
        version=version,
        updated_at=updated_at,
    )
    return view, result


class JobQueries:
    def __init__(
        self, pool: AsyncConnectionPool[AsyncConnection[Any]], catalog: EventStore
    ) -> None:
        self.pool = pool
        self.catalog = catalog

    async def get(
        self, tenant_id: str, job_id: UUID
    ) -> tuple[JobView, dict[str, Any] | None] | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                sql.SQL("SELECT {} FROM jobs_view WHERE tenant_id = %s AND id = %s").format(
                    _COLUMNS
                ),
                (tenant_id, job_id),
                prepare=True,
            )
            row = await cur.fetchone()
        return _to_view(row) if row else None

    async def list(
        self, tenant_id: str, *, limit: int, cursor: str | None, params: Mapping[str, str]
    ) -> tuple[list[JobView], str | None]:
        job_type = params.get("type", params.get("job_type", "BULK_UPDATE"))
        if job_type not in JOB_TYPES:
            raise InvalidQuery("type", f"must be one of {', '.join(JOB_TYPES)}")
        where: list[sql.Composable] = [sql.SQL("tenant_id = %s"), sql.SQL("type = %s")]
        args: list[Any] = [tenant_id, job_type]
        if "status" in params:
            if params["status"] not in JOB_STATUSES:
                raise InvalidQuery("status", f"must be one of {', '.join(JOB_STATUSES)}")
            where.append(sql.SQL("status = %s"))
            args.append(params["status"])
        rows, next_cursor = await keyset_page(
            self.pool,
            _COLUMNS,
            sql.SQL("jobs_view"),
            where,
            args,
            CreatedKey,
            limit=limit,
            cursor=cursor,
        )
        items = [_to_view(r)[0] for r in rows]
        return items, next_cursor

    async def item_results(self, tenant_id: str, job_id: UUID) -> AsyncIterator[bytes]:
        """Per-item results as NDJSON lines, in item order, from the job's progress events."""
        encoder = msgspec.json.Encoder()
        async with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor(name=f"job_results_{job_id.hex}")
            async with cur:
                await cur.execute(
                    sql.SQL(
                        "SELECT originator_id, originator_version, topic, state FROM {}"
                        " WHERE originator_id = %s ORDER BY originator_version"
                    ).format(sql.Identifier(EVENTS_TABLE)),
                    (progress_id(tenant_id, str(job_id)),),
                )
                async for row in cur:
                    event = self.catalog.decode(row[0], row[1], row[2], bytes(row[3]))
                    if isinstance(event, JobProgress.BatchApplied):
                        for item in event.results:
                            yield encoder.encode(item) + b"\n"
