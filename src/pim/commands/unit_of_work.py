"""One command's working set: aggregates loaded once, changed in memory, saved together in one
transaction (so an entity, its unique keys and its parent's children list change atomically)."""

from __future__ import annotations

from typing import Any, TypeVar

from pim.domain.context import Actor
from pim.domain.entity import Entity
from pim.domain.errors import Conflict, NotFound
from pim.domain.ids import aggregate_id
from pim.domain.indexes import (
    Children,
    Turnstile,
    UniqueKey,
    children_id,
    turnstile_id,
    unique_key_id,
)
from pim.domain.registry import RESOURCE_BY_TYPE
from pim.eventstore import EventStore
from pim.infra.idempotency import Receipt

TEntity = TypeVar("TEntity", bound=Entity)


class UnitOfWork:
    """Implements the ``Workspace`` that resource policies work through (domain/resource.py)."""

    def __init__(self, store: EventStore, actor: Actor) -> None:
        self.store = store
        self.actor = actor
        self._loaded: dict[str, Any] = {}
        self._touched: dict[str, Any] = {}
        self.deleted: set[str] = set()
        self._new_children: set[str] = set()
        self._created: set[str] = set()  # ids of the entities this unit of work created

    # -- loading --------------------------------------------------------------------------

    def _get(self, full_id: str) -> Any | None:
        if full_id not in self._loaded:
            self._loaded[full_id] = self.store.find(full_id)
        return self._loaded[full_id]

    def prefetch(self, full_ids: list[str]) -> None:
        """Load many aggregates in one query, so a batch does not pay a round trip each."""
        wanted = [i for i in dict.fromkeys(full_ids) if i not in self._loaded]
        if not wanted:  # all loaded already: no round trip
            return
        found = self.store.load_many(wanted)
        for full_id in wanted:
            self._loaded[full_id] = found.get(full_id)

    def entity_key(self, entity_id: str) -> str:
        return aggregate_id(self.actor.tenant_id, entity_id)

    def children_key(self, parent_id: str) -> str:
        return children_id(self.actor.tenant_id, parent_id)

    def unique_key(self, kind: str, value: str) -> str:
        return unique_key_id(self.actor.tenant_id, kind, value)

    def find(self, cls: type[TEntity], entity_id: str) -> TEntity | None:
        """The tenant's live entity of this type, or None."""
        aggregate = self._get(aggregate_id(self.actor.tenant_id, entity_id))
        if isinstance(aggregate, cls) and not aggregate.deleted:
            return aggregate
        return None

    def get(self, cls: type[TEntity], entity_id: str) -> TEntity:
        found = self.find(cls, entity_id)
        if found is None:
            raise NotFound(f"{cls.entity_type} not found")
        return found

    # -- unique values --------------------------------------------------------------------

    def owner_of(self, kind: str, value: str) -> str | None:
        key = self._get(unique_key_id(self.actor.tenant_id, kind, value))
        return key.owner_id if isinstance(key, UniqueKey) else None

    def claim(self, kind: str, value: str, owner_id: str, label: str, *, field: str) -> None:
        """Claim a unique value for ``owner_id``; Conflict (409) naming ``field`` when someone
        else holds it."""
        key_id = unique_key_id(self.actor.tenant_id, kind, value)
        key = self._get(key_id)
        if key is None:
            key = UniqueKey.claim_new(self.actor, key_id, owner_id, label)
            self._loaded[key_id] = key
        else:
            try:
                key.claim(self.actor, owner_id)
            except Conflict as exc:
                raise Conflict(exc.detail, field) from None
        self.touch(key)

    def pass_turnstile(self, name: str, by: str) -> None:
        """Serialise this command with every other one passing the tenant's turnstile
        ``name`` (see Turnstile): a concurrent one makes this save conflict and retry."""
        key_id = turnstile_id(self.actor.tenant_id, name)
        turnstile = self._get(key_id)
        if not isinstance(turnstile, Turnstile):
            turnstile = Turnstile.open(self.actor, key_id)
            self._loaded[key_id] = turnstile
        turnstile.pass_through(self.actor, by)
        self.touch(turnstile)

    def release(self, kind: str, value: str, owner_id: str) -> None:
        key = self._get(unique_key_id(self.actor.tenant_id, kind, value))
        if isinstance(key, UniqueKey):
            key.release(self.actor, owner_id)
            self.touch(key)

    # -- children -------------------------------------------------------------------------

    def find_children(self, parent_id: str) -> Children | None:
        """A parent's children list if it has one (read only: nothing is created). A parent
        this unit of work created has only the list it started here (nothing to load)."""
        full_id = children_id(self.actor.tenant_id, parent_id)
        if full_id not in self._loaded and self.entity_key(parent_id) in self._created:
            return None
        found = self._get(full_id)
        return found if isinstance(found, Children) else None

    def children(self, parent_id: str, *, joining: dict[str, str] | None = None) -> Children:
        """A parent's children list, started if it has none. ``joining`` (child id -> type)
        are children about to be added: a new list starts with them in its first event."""
        full_id = children_id(self.actor.tenant_id, parent_id)
        found = self._get(full_id)
        if found is None:
            found = Children.start(self.actor, full_id, joining)
            self._loaded[full_id] = found
            self._new_children.add(full_id)
        self.touch(found)
        assert isinstance(found, Children)
        return found

    # -- saving ---------------------------------------------------------------------------

    def touch(self, *aggregates: Any) -> None:
        for aggregate in aggregates:
            self._touched[aggregate.id] = aggregate

    def delete(self, entity: Entity) -> None:
        """Delete an entity and everything that cascades from it (its policy says what), in
        this unit of work; an entity it already deleted is left alone."""
        if entity.id in self.deleted:
            return
        self.deleted.add(entity.id)
        RESOURCE_BY_TYPE[entity.entity_type].policy.on_delete(self, entity)
        entity.delete(self.actor)
        self.touch(entity)

    def add(self, entity: Entity) -> None:
        """An entity this unit of work created."""
        self._created.add(entity.id)
        self._loaded[entity.id] = entity
        self.touch(entity)

    def commit(self, receipt: Receipt | None = None) -> int | None:
        for full_id in self._new_children:
            # A list this command created is saved as its final state in one event, however
            # many children joined it meanwhile.
            made = self._touched[full_id]
            if len(made.pending_events) == 1:
                continue  # only its first event: nothing to fold
            compact = Children.start(self.actor, full_id, made.members, closed=made.closed)
            self._touched[full_id] = self._loaded[full_id] = compact
        self._new_children.clear()
        return self.store.save(*self._touched.values(), receipt=receipt)
