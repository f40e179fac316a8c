"""The base of every catalog aggregate: a tenant-scoped entity whose state is a field map.

Every resource (product, variant, category, ...) is an ``Entity`` subclass with its own event
classes (so the log names them: ``Product.Created``, ``Category.Updated``) and its own rules.
One mechanism gives every resource the same create / merge-patch update / delete behaviour.

eventsourcing 9.5's ``Aggregate`` insists on UUID ids; ours are ``"{tenant}:{uuid}"`` strings,
so the base is built on ``BaseAggregate[str]`` with ``CanMutateAggregate[str]`` events.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Self

from eventsourcing.domain import (
    BaseAggregate,
    CanInitAggregate,
    CanMutateAggregate,
    MetaDomainEvent,
)
from eventsourcing.utils import resolve_topic

from pim.domain.context import Actor
from pim.domain.errors import NotFound, PreconditionFailed
from pim.domain.ids import aggregate_id, entity_id_of
from pim.domain.rules import FieldErrors

FieldChanges = dict[str, dict[str, Any]]


# A command's field values as the client sent them; an entity's fields (normalised); the
# fields before a change (None when creating).
Values = Mapping[str, Any]
Fields = dict[str, Any]
Current = Mapping[str, Any] | None


class CatalogEvent(CanMutateAggregate[str], metaclass=MetaDomainEvent):
    """Fields every catalog event carries, besides eventsourcing's id/version/timestamp."""

    originator_id: str
    originator_version: int
    timestamp: datetime
    tenant_id: str
    org_id: str
    actor: str
    actor_email: str | None
    request_id: str


@functools.cache
def _plain_init(aggregate_class: type[Any]) -> bool:
    """Whether the class's __init__ takes no arguments (all our aggregates: their state is
    set by their events' apply)."""
    return list(inspect.signature(aggregate_class.__init__).parameters) in ([], ["self"]) or (
        aggregate_class.__init__ is object.__init__
    )


class CreationEvent(CatalogEvent, CanInitAggregate[str]):
    """The first event of a catalog aggregate.

    eventsourcing's generic ``mutate`` matches the event's attributes against the aggregate's
    ``__init__`` signature for every aggregate it builds (a tenth of a bulk import's time);
    ours take no arguments, so the shell is made directly. Anything else takes the generic
    path."""

    originator_topic: str

    def mutate(self, aggregate: Any) -> Any:
        aggregate_class = resolve_topic(self.originator_topic)
        if aggregate is not None or not _plain_init(aggregate_class):
            return super().mutate(aggregate)
        made = aggregate_class.__new__(aggregate_class)
        made.__base_init__(self.originator_id, self.originator_version, self.timestamp)
        if aggregate_class.__init__ is not object.__init__:
            made.__init__()
        self.apply(made)
        return made


def merge_patch(current: Any, patch: Any) -> Any:
    """RFC 7396 merge of ``patch`` into ``current`` (objects merge by key, null removes)."""
    if not isinstance(patch, Mapping):
        return patch
    merged: dict[str, Any] = dict(current) if isinstance(current, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


class Entity(BaseAggregate[str]):
    """A tenant's catalog object. Subclasses set ``entity_type`` and their rules.

    State is immutable by discipline: ``fields`` and the values in it are shared with the
    events that set them, so no code mutates them in place; an event's ``apply`` replaces
    the map (copy-on-write). That is what lets loading and creating skip deep copies."""

    entity_type: ClassVar[str] = "entity"
    # Long-lived and edited again and again: loads start from a snapshot (see eventstore).
    snapshot: ClassVar[bool] = True
    # Object-valued fields that merge key by key on update (RFC 7396) instead of replacing.
    merge_fields: ClassVar[frozenset[str]] = frozenset()
    # Values of optional fields a new entity starts with.
    defaults: ClassVar[dict[str, Any]] = {}

    if TYPE_CHECKING:  # set by the events; not annotations at runtime (the metaclass
        # would turn annotated attributes into __init__ parameters)
        fields: dict[str, Any]
        deleted: bool

    class Event(CatalogEvent):
        pass

    # The events every entity type has. A subclass gets its own subclass of each (the log
    # names them by type: ``Brand.Created``, ``Category.Updated``), unless it declares one
    # itself (to add a field, an upcaster).
    LIFECYCLE_EVENTS: ClassVar[tuple[str, ...]] = ("Created", "Updated", "Deleted")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in cls.LIFECYCLE_EVENTS:
            if name in cls.__dict__:
                continue
            base = getattr(cls, name)
            own = type(base)(
                name,
                (base,),
                {"__module__": cls.__module__, "__qualname__": f"{cls.__qualname__}.{name}"},
            )
            setattr(cls, name, own)

    class Created(Event, CreationEvent):
        fields: dict[str, Any]

        def apply(self, aggregate: Any) -> None:
            # Shared with the event, never copied: field maps are replaced, not mutated
            # (see the class docstring), and copying was a tenth of every aggregate load.
            aggregate.fields = self.fields
            aggregate.deleted = False

    class Updated(Event):
        changes: FieldChanges

        def apply(self, aggregate: Any) -> None:
            aggregate.fields = {
                **aggregate.fields,
                **{name: change["to"] for name, change in self.changes.items()},
            }

    class Deleted(Event):
        # The fields as they were, so the event describes what disappeared on its own
        # (audit "changes", projections that need e.g. a variant's product).
        fields: dict[str, Any]

        def apply(self, aggregate: Any) -> None:
            aggregate.deleted = True

    # -- commands -------------------------------------------------------------------------

    @classmethod
    def normalise(cls, values: Values, *, current: Current) -> Fields:
        """Check and normalise the fields a client sent (``current`` is None when creating);
        raise ValidationFailed naming every bad field."""
        errors = FieldErrors()
        out: Fields = {}
        cls.check(values, out, errors, current)
        errors.raise_if_any()
        return out

    @classmethod
    def check(cls, values: Values, out: Fields, errors: FieldErrors, current: Current) -> None:
        """Subclasses: check each field of ``values`` (``current``: the fields before, None
        when creating), put its normal form in ``out``, add an error for each bad one."""
        raise NotImplementedError

    @classmethod
    def create(cls, actor: Actor, entity_id: str, fields: dict[str, Any]) -> Self:
        return cls._create(
            cls.Created,
            id=aggregate_id(actor.tenant_id, entity_id),
            fields={**cls.defaults, **fields},
            **actor.event_meta(),
        )

    def update(self, actor: Actor, patch: Mapping[str, Any]) -> FieldChanges:
        """Apply a merge patch of already-normalised values; no change records no event."""
        self.check_exists()
        changes: FieldChanges = {}
        for name, value in patch.items():
            before = self.fields.get(name)
            if name in self.merge_fields:
                after = {} if value is None else merge_patch(before, value)
            else:
                after = value
            if after != before:
                changes[name] = {"from": before, "to": after}
        if changes:
            self.check_state({**self.fields, **{k: c["to"] for k, c in changes.items()}})
            self.trigger_event(self.Updated, changes=changes, **actor.event_meta())
        return changes

    def delete(self, actor: Actor) -> None:
        self.check_exists()
        self.trigger_event(self.Deleted, fields=self.fields, **actor.event_meta())

    # -- invariants -----------------------------------------------------------------------

    def check_exists(self) -> None:
        if self.deleted:
            raise NotFound(f"{self.entity_type} not found")

    def check_version(self, expected: int | None) -> None:
        """If-Match: the client's version must be the current one."""
        if expected is not None and expected != self.version:
            raise PreconditionFailed(
                f"{self.entity_type} is at version {self.version}, not {expected}"
            )

    def check_state(self, fields: Mapping[str, Any]) -> None:
        """Invariants over the whole field map after a change; subclasses extend."""

    # -- views ----------------------------------------------------------------------------

    @property
    def entity_id(self) -> str:
        return entity_id_of(self.id)

    def as_resource(self) -> dict[str, Any]:
        """The entity as clients see it: what its read model shows at this version."""
        return {
            "id": self.entity_id,
            **self.fields,
            "version": self.version,
            "created_at": self.created_on,
            "updated_at": self.modified_on,
        }
