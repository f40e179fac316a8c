"""Jobs (exports, bulk updates, deletes, imports) as aggregates in their own event store, so
job progress never contends with catalog writes on the catalog log's insert lock."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Self
from uuid import UUID

import msgspec
from eventsourcing.domain import BaseAggregate

from pim.domain.context import Actor
from pim.domain.entity import CatalogEvent, CreationEvent
from pim.domain.ids import aggregate_id, entity_id_of
from pim.jobs.kinds import result_url

JOB_STATUSES = ("PENDING", "PROCESSING", "COMPLETED", "FAILED")


class JobView(msgspec.Struct, kw_only=True):
    """A job as clients see it."""

    id: UUID
    type: str
    status: str
    dry_run: bool
    total_items: int
    processed_items: int
    succeeded_items: int
    failed_items: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    created_by: str
    error: str | None
    result_url: str | None
    # EXPORT: the log position the file reflects (once it is written)
    position: int | None
    version: int
    updated_at: datetime


class Job(BaseAggregate[str]):
    if TYPE_CHECKING:
        job_type: str
        payload: dict[str, Any]
        dry_run: bool
        created_by: str
        tenant_id: str
        acting: Actor
        status: str
        total_items: int
        processed_items: int
        succeeded_items: int
        failed_items: int
        started_at: datetime | None
        finished_at: datetime | None
        result: dict[str, Any] | None
        error: str | None
        item_ids: list[str] | None

    class Event(CatalogEvent):
        pass

    class Created(Event, CreationEvent):
        job_type: str
        payload: dict[str, Any]
        dry_run: bool

        def apply(self, aggregate: Any) -> None:
            aggregate.job_type = self.job_type
            aggregate.payload = self.payload
            aggregate.dry_run = self.dry_run
            aggregate.created_by = self.actor
            aggregate.tenant_id = self.tenant_id
            # Who the job acts for: its catalog changes are recorded as theirs.
            aggregate.acting = Actor(
                self.tenant_id, self.org_id, self.actor, self.actor_email, self.request_id
            )
            aggregate.status = "PENDING"
            aggregate.total_items = 0
            aggregate.processed_items = aggregate.succeeded_items = aggregate.failed_items = 0
            aggregate.started_at = aggregate.finished_at = None
            aggregate.result = None
            aggregate.error = None
            aggregate.item_ids = None

    class Started(Event):
        total_items: int
        # The resolved item ids (filter jobs): fixed at start, so a resumed job works on the
        # same items whatever changed since.
        item_ids: list[str] | None

        def apply(self, aggregate: Any) -> None:
            aggregate.status = "PROCESSING"
            aggregate.total_items = self.total_items
            aggregate.started_at = self.timestamp
            aggregate.item_ids = self.item_ids

    class Progressed(Event):
        processed: int
        succeeded: int
        failed: int

        def apply(self, aggregate: Any) -> None:
            aggregate.processed_items = self.processed
            aggregate.succeeded_items = self.succeeded
            aggregate.failed_items = self.failed

    class Completed(Event):
        processed: int
        succeeded: int
        failed: int
        result: dict[str, Any]

        def apply(self, aggregate: Any) -> None:
            aggregate.status = "COMPLETED"
            aggregate.total_items = max(aggregate.total_items, self.processed)
            aggregate.processed_items = self.processed
            aggregate.succeeded_items = self.succeeded
            aggregate.failed_items = self.failed
            aggregate.result = self.result
            aggregate.finished_at = self.timestamp

    class Failed(Event):
        reason: str

        def apply(self, aggregate: Any) -> None:
            aggregate.status = "FAILED"
            aggregate.error = self.reason
            aggregate.finished_at = self.timestamp

    @classmethod
    def create(
        cls,
        actor: Actor,
        job_id: str,
        job_type: str,
        payload: dict[str, Any],
        *,
        dry_run: bool = False,
    ) -> Self:
        return cls._create(
            cls.Created,
            id=aggregate_id(actor.tenant_id, job_id),
            job_type=job_type,
            payload=payload,
            dry_run=dry_run,
            **actor.event_meta(),
        )

    @property
    def job_id(self) -> str:
        return entity_id_of(self.id)

    @property
    def finished(self) -> bool:
        return self.status in ("COMPLETED", "FAILED")

    def start(self, actor: Actor, total_items: int, item_ids: list[str] | None = None) -> None:
        if self.status == "PENDING":
            self.trigger_event(
                self.Started, total_items=total_items, item_ids=item_ids, **actor.event_meta()
            )

    def progress(self, actor: Actor, processed: int, succeeded: int, failed: int) -> None:
        if not self.finished and processed > self.processed_items:
            self.trigger_event(
                self.Progressed,
                processed=processed,
                succeeded=succeeded,
                failed=failed,
                **actor.event_meta(),
            )

    def complete(
        self, actor: Actor, processed: int, succeeded: int, failed: int, result: dict[str, Any]
    ) -> None:
        if not self.finished:
            self.trigger_event(
                self.Completed,
                processed=processed,
                succeeded=succeeded,
                failed=failed,
                result=result,
                **actor.event_meta(),
            )

    def fail(self, actor: Actor, reason: str) -> None:
        if not self.finished:
            self.trigger_event(self.Failed, reason=reason, **actor.event_meta())

    def as_resource(self) -> JobView:
        """The job as its record in the jobs view shows it (what the job itself knows)."""
        return JobView(
            id=UUID(self.job_id),
            type=self.job_type,
            status=self.status,
            dry_run=self.dry_run,
            total_items=self.total_items,
            processed_items=self.processed_items,
            succeeded_items=self.succeeded_items,
            failed_items=self.failed_items,
            created_at=self.created_on,
            started_at=self.started_at,
            finished_at=self.finished_at,
            created_by=self.created_by,
            error=self.error,
            result_url=result_url(self.job_id, self.job_type, self.status),
            position=None,
            version=self.version,
            updated_at=self.modified_on,
        )
