"""Many catalog commands in one transaction: a bulk job's batch.

Commands run one after another against one unit of work and are saved together with what
the job records about them (its progress), so a batch is applied exactly once. A command
that fails raises and may leave part of its changes in the unit of work: the caller drops
the batch and runs it again without that command (jobs/bulk.py does)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from pim.commands.handlers import apply, prefetch_for
from pim.commands.messages import CatalogCommand
from pim.commands.unit_of_work import UnitOfWork
from pim.domain.context import Actor
from pim.domain.entity import Entity
from pim.domain.indexes import Children
from pim.domain.registry import RESOURCE_BY_TYPE
from pim.eventstore import EventStore

TEntity = TypeVar("TEntity", bound=Entity)


class CommandBatch:
    def __init__(self, store: EventStore, actor: Actor) -> None:
        self._store = store
        self._uow = UnitOfWork(store, actor)

    # -- reading, to decide what each command does ----------------------------------------

    def prefetch(self, full_ids: list[str]) -> None:
        """Load many aggregates in one query before the commands that read them."""
        self._uow.prefetch(full_ids)

    def prefetch_for(self, entity_type: str, entity_ids: Sequence[str]) -> None:
        """Load in one query what commands on these entities read (their policy says)."""
        policy = RESOURCE_BY_TYPE[entity_type].policy
        self._uow.prefetch([key for i in entity_ids for key in policy.loads(self._uow, i)])

    def entity_key(self, entity_id: str) -> str:
        return self._uow.entity_key(entity_id)

    def children_key(self, parent_id: str) -> str:
        return self._uow.children_key(parent_id)

    def unique_key(self, kind: str, value: str) -> str:
        return self._uow.unique_key(kind, value)

    def find(self, cls: type[TEntity], entity_id: str) -> TEntity | None:
        return self._uow.find(cls, entity_id)

    def get(self, cls: type[TEntity], entity_id: str) -> TEntity:
        return self._uow.get(cls, entity_id)

    def find_children(self, parent_id: str) -> Children | None:
        return self._uow.find_children(parent_id)

    # -- writing ---------------------------------------------------------------------------

    def run(self, command: CatalogCommand) -> Entity:
        """Apply one command (not saved until ``commit``); the entity it touched."""
        prefetch_for(self._uow, command)
        return apply(self._uow, command)

    def commit(self, *also: Any, dry_run: bool = False) -> int | None:
        """Save every command's changes and ``also`` (the job's own records) in one
        transaction; with ``dry_run`` only ``also``. The log position reached."""
        if dry_run:
            return self._store.save(*also)
        self._uow.touch(*also)
        return self._uow.commit()
