"""A resource type's rules beyond its own fields: references to other aggregates, unique
values, children lists, cascades. A policy is written against the ``Workspace`` protocol,
which the unit of work of the command it runs in implements: everything it loads comes from
the log, everything it changes is saved with the command. Nothing here does I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pim.domain.context import Actor
from pim.domain.entity import Entity

if TYPE_CHECKING:
    from pim.domain.indexes import Children

TEntity = TypeVar("TEntity", bound=Entity)


class Workspace(Protocol):
    """What a policy may do: the unit of work of the command it runs in. Everything it
    loads comes from the log; everything it changes is saved with the command."""

    actor: Actor

    def find(self, cls: type[TEntity], entity_id: str) -> TEntity | None: ...

    def get(self, cls: type[TEntity], entity_id: str) -> TEntity: ...

    def entity_key(self, entity_id: str) -> str: ...

    def children_key(self, parent_id: str) -> str: ...

    def owner_of(self, kind: str, value: str) -> str | None: ...

    def claim(self, kind: str, value: str, owner_id: str, label: str, *, field: str) -> None: ...

    def release(self, kind: str, value: str, owner_id: str) -> None: ...

    def pass_turnstile(self, name: str, by: str) -> None: ...

    def find_children(self, parent_id: str) -> Children | None: ...

    def children(self, parent_id: str, *, joining: dict[str, str] | None = None) -> Children: ...

    def delete(self, entity: Entity) -> None:
        """Delete an entity and what cascades from it (no-op if this command already did)."""


class Policy:
    """A resource type's rules beyond its own fields. Default: none."""

    def loads(self, ws: Workspace, entity_id: str) -> list[str]:
        """What a command on this entity reads besides the entity (loaded with it, in one
        query)."""
        return [ws.entity_key(entity_id)]

    def resource(self, ws: Workspace, entity: Entity) -> dict[str, Any]:
        """The entity as clients see it after the command (what its read model will show)."""
        return entity.as_resource()

    def on_create(self, ws: Workspace, entity: Entity) -> None:
        """Check references and claim unique values for a new entity."""

    def on_update(self, ws: Workspace, entity: Entity, before: Mapping[str, Any]) -> None:
        """Same for changed fields (``before`` holds the previous values)."""

    def on_delete(self, ws: Workspace, entity: Entity) -> None:
        """Release what the entity held and cascade to its children."""


def changed(entity: Entity, before: Mapping[str, Any], name: str) -> bool:
    return before.get(name) != entity.fields.get(name)
