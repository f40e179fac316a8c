"""The command bus: the one door through which anything is written. API requests, reverts
and job submissions are handled one command per transaction (``handle``); a bulk job's batch
runs many commands in one transaction (``batch``). The bus retries optimistic concurrency
conflicts and answers once the read models reflect the write, or says they do not yet."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from pim.commands.batch import CommandBatch
from pim.commands.handlers import apply, prefetch_for, resource_after
from pim.commands.messages import CatalogCommand, Command, SubmitJob
from pim.commands.unit_of_work import UnitOfWork
from pim.domain.context import Actor
from pim.domain.errors import Conflict
from pim.eventstore import EventStore, IntegrityError
from pim.jobs.domain import Job

log = logging.getLogger(__name__)

# Attempts for a command whose aggregate another writer changed between load and save.
MAX_ATTEMPTS = 25

# (tenant id, log position) -> whether the read models reached it in time.
WaitForPosition = Callable[[str, int], bool]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a command did: the entity it touched, the log position it reached (None when it
    changed nothing), the entity as this command left it, as clients see it (None once
    deleted), and whether the read models already reflect it."""

    entity_id: str
    position: int | None
    resource: dict[str, Any] | None = None
    visible: bool = True


class CommandBus:
    def __init__(
        self,
        store: EventStore,
        wait_for_position: WaitForPosition,
        *,
        jobs: EventStore | None = None,
        wait_for_job: WaitForPosition | None = None,
    ) -> None:
        self.store = store
        self.wait_for_position = wait_for_position
        self.jobs = jobs
        self.wait_for_job = wait_for_job

    def handle(self, command: Command) -> Outcome:
        """Run the command in its own transaction; its outcome."""
        if isinstance(command, SubmitJob):
            outcome = self._submit(command)
            wait = self.wait_for_job
        else:
            outcome = self._retrying(command)
            wait = self.wait_for_position
        if outcome.position is None or wait is None:
            return outcome
        visible = wait(command.actor.tenant_id, outcome.position)
        return Outcome(outcome.entity_id, outcome.position, outcome.resource, visible)

    def batch(self, actor: Actor) -> CommandBatch:
        """Many commands of one actor in one transaction (a bulk job's batch)."""
        return CommandBatch(self.store, actor)

    def _retrying(self, command: CatalogCommand) -> Outcome:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return self._run(command)
            except IntegrityError:
                # Someone saved one of its aggregates after we loaded it: run it again on
                # fresh state. With If-Match that run answers 412 if the resource itself
                # moved on; a conflict elsewhere (a unique key, a children list, a
                # turnstile) is no reason to call the client's version stale.
                if attempt == MAX_ATTEMPTS:
                    break
                # Exponential backoff with full jitter, capped at 50 ms.
                time.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))  # noqa: S311
        raise Conflict("the resource is being changed by other requests; retry")

    def _run(self, command: CatalogCommand) -> Outcome:
        uow = UnitOfWork(self.store, command.actor)
        prefetch_for(uow, command)
        entity = apply(uow, command)
        resource = resource_after(uow, command, entity)
        answer = getattr(command, "answer", None)
        receipt = answer(resource) if answer is not None and resource is not None else None
        return Outcome(entity.entity_id, uow.commit(receipt), resource)

    def _submit(self, command: SubmitJob) -> Outcome:
        assert self.jobs is not None, "this bus has no jobs store"
        job = Job.create(
            command.actor,
            command.job_id,
            command.job_type,
            dict(command.payload),
            dry_run=command.dry_run,
        )
        resource = msgspec.to_builtins(job.as_resource())
        receipt = command.answer(resource) if command.answer is not None else None
        return Outcome(job.job_id, self.jobs.save(job, receipt=receipt), resource)
