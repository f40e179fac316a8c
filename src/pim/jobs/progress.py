"""A bulk job's progress, kept in the CATALOG log and saved in the same transaction as each
batch's catalog changes: after a crash the job resumes at the first unapplied item, and no item
is ever applied twice."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from eventsourcing.domain import BaseAggregate

from pim.domain.context import Actor
from pim.domain.entity import CatalogEvent, CreationEvent


def progress_id(tenant_id: str, job_id: str) -> str:
    return f"{tenant_id}:job-progress:{job_id}"


class JobProgress(BaseAggregate[str]):
    if TYPE_CHECKING:
        next_index: int
        succeeded: int
        failed: int

    class Event(CatalogEvent):
        pass

    class Began(Event, CreationEvent):
        def apply(self, aggregate: Any) -> None:
            aggregate.next_index = 0
            aggregate.succeeded = 0
            aggregate.failed = 0

    class BatchApplied(Event):
        start: int
        end: int
        # One entry per item: {"index", "id", "status": "SUCCEEDED"|"FAILED"|..., "errors"}
        results: list[dict[str, Any]]

        def apply(self, aggregate: Any) -> None:
            aggregate.next_index = self.end
            for item in self.results:
                if item["status"] == "FAILED":
                    aggregate.failed += 1
                else:
                    aggregate.succeeded += 1

    @classmethod
    def begin(cls, actor: Actor, aggregate_id: str) -> Self:
        return cls._create(cls.Began, id=aggregate_id, **actor.event_meta())

    def record(self, actor: Actor, start: int, end: int, results: list[dict[str, Any]]) -> None:
        if start != self.next_index:
            raise RuntimeError(f"batch {start}..{end} does not follow {self.next_index}")
        self.trigger_event(
            self.BatchApplied, start=start, end=end, results=results, **actor.event_meta()
        )
