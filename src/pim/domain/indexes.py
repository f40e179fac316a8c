"""Index aggregates: uniqueness and parent/child membership, kept in the log itself.

A unique value (a SKU, a slug, an attribute key) is an aggregate with a deterministic id, saved
in the same transaction as the entity that claims it: the events table's primary key makes two
concurrent claims impossible (one save fails and is retried, then sees the claim). Children
(variants and media of a product, subcategories) are tracked the same way, so a cascade or a
"has children" check never trusts a read model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Self

from eventsourcing.domain import BaseAggregate

from pim.domain.context import Actor
from pim.domain.entity import CatalogEvent, CreationEvent
from pim.domain.errors import Conflict, NotFound


def unique_key_id(tenant_id: str, kind: str, value: str) -> str:
    return f"{tenant_id}:unique:{kind}:{value}"


def children_id(tenant_id: str, parent_id: str) -> str:
    return f"{tenant_id}:children:{parent_id}"


def turnstile_id(tenant_id: str, name: str) -> str:
    return f"{tenant_id}:turnstile:{name}"


class UniqueKey(BaseAggregate[str]):
    """Who owns one unique value (None once released)."""

    if TYPE_CHECKING:
        owner_id: str | None
        label: str

    class Event(CatalogEvent):
        pass

    class Claimed(Event, CreationEvent):
        owner_id: str
        label: str

        def apply(self, aggregate: Any) -> None:
            aggregate.owner_id = self.owner_id
            aggregate.label = self.label

    class Reclaimed(Event):
        owner_id: str

        def apply(self, aggregate: Any) -> None:
            aggregate.owner_id = self.owner_id

    class Released(Event):
        def apply(self, aggregate: Any) -> None:
            aggregate.owner_id = None

    @classmethod
    def claim_new(cls, actor: Actor, key_id: str, owner_id: str, label: str) -> Self:
        return cls._create(
            cls.Claimed, id=key_id, owner_id=owner_id, label=label, **actor.event_meta()
        )

    def claim(self, actor: Actor, owner_id: str) -> None:
        if self.owner_id == owner_id:
            return
        if self.owner_id is not None:
            raise Conflict(f"{self.label} is already taken")
        self.trigger_event(self.Reclaimed, owner_id=owner_id, **actor.event_meta())

    def release(self, actor: Actor, owner_id: str) -> None:
        if self.owner_id == owner_id:
            self.trigger_event(self.Released, **actor.event_meta())


class Children(BaseAggregate[str]):
    """The live children of one parent: child id -> entity type."""

    # One event per child added or removed: loads start from a snapshot (see eventstore).
    snapshot: ClassVar[bool] = True

    if TYPE_CHECKING:
        members: dict[str, str]
        closed: bool

    class Event(CatalogEvent):
        pass

    class Started(Event, CreationEvent):
        """A list's first event. A list made by one command starts with its members (a
        product imported with its variants is one event here, not one per variant)."""

        members: dict[str, str]
        closed: bool
        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["members"] = {}
            state["closed"] = False

        def apply(self, aggregate: Any) -> None:
            aggregate.members = dict(self.members)
            aggregate.closed = self.closed

    class Added(Event):
        child_id: str
        child_type: str

        def apply(self, aggregate: Any) -> None:
            aggregate.members[self.child_id] = self.child_type

    class Removed(Event):
        child_id: str

        def apply(self, aggregate: Any) -> None:
            aggregate.members.pop(self.child_id, None)

    class Closed(Event):
        """The parent was deleted: no child may join any more (a concurrent add conflicts)."""

        def apply(self, aggregate: Any) -> None:
            aggregate.closed = True

    @classmethod
    def start(
        cls,
        actor: Actor,
        aggregate_id: str,
        members: dict[str, str] | None = None,
        *,
        closed: bool = False,
    ) -> Self:
        return cls._create(
            cls.Started,
            id=aggregate_id,
            members=dict(members or {}),
            closed=closed,
            **actor.event_meta(),
        )

    def add(self, actor: Actor, child_id: str, child_type: str) -> None:
        if self.closed:
            raise NotFound("the parent of this resource no longer exists")
        if child_id not in self.members:
            self.trigger_event(
                self.Added, child_id=child_id, child_type=child_type, **actor.event_meta()
            )

    def remove(self, actor: Actor, child_id: str) -> None:
        if child_id in self.members:
            self.trigger_event(self.Removed, child_id=child_id, **actor.event_meta())

    def close(self, actor: Actor) -> None:
        if not self.closed:
            self.trigger_event(self.Closed, **actor.event_meta())

    def of_type(self, child_type: str) -> list[str]:
        return [cid for cid, ctype in self.members.items() if ctype == child_type]


class Turnstile(BaseAggregate[str]):
    """Changes that must not run side by side pass here one at a time.

    A rule that reads more than its command writes cannot rely on the events table's key
    alone: two category moves that each check the other's ancestors for a cycle write
    different aggregates, so both would succeed and make a loop. Each such change records a
    pass on the tenant's turnstile in its own transaction; two concurrent ones write the same
    version, one save fails, and its command is retried on fresh state (where the rule now
    sees the other change). Only moves pass (creations cannot close a loop); the stream grows
    with a tenant's category moves, and a load starts from its latest snapshot."""

    snapshot: ClassVar[bool] = True

    if TYPE_CHECKING:
        passes: int

    class Event(CatalogEvent):
        pass

    class Opened(Event, CreationEvent):
        def apply(self, aggregate: Any) -> None:
            aggregate.passes = 0

    class Passed(Event):
        by: str

        def apply(self, aggregate: Any) -> None:
            aggregate.passes += 1

    @classmethod
    def open(cls, actor: Actor, aggregate_id: str) -> Self:
        return cls._create(cls.Opened, id=aggregate_id, **actor.event_meta())

    def pass_through(self, actor: Actor, by: str) -> None:
        self.trigger_event(self.Passed, by=by, **actor.event_meta())
