"""Snapshots: an aggregate's whole state at one version, a cache of its replay (decision 0017)."""

from __future__ import annotations

import functools
import hashlib
from datetime import datetime
from typing import Any

from eventsourcing.domain import CanSnapshotAggregate, MetaDomainEvent
from eventsourcing.utils import get_topic

from pim.domain.entity import CatalogEvent, Entity

# An aggregate that opts in (class attribute ``snapshot = True``) gets its state stored
# whenever its version reaches a multiple of this: a load then replays at most this many
# events, however long its history (a variant repriced every month for years).
SNAPSHOT_EVERY = 32

# Bump when what an aggregate's *state* holds changes without any event class changing (a
# new attribute computed in ``apply``): snapshots taken before are then ignored.
SNAPSHOT_STATE_VERSION = 1


@functools.cache
def snapshot_schema() -> str:
    """A fingerprint of everything a snapshot's meaning depends on: each snapshotted
    aggregate class and the class_version of each of its event classes (an upcaster added
    to any of them bumps one), and SNAPSHOT_STATE_VERSION. A snapshot taken under another
    fingerprint is ignored (the aggregate is replayed), so no deploy has to purge them."""
    import pim.domain.registry  # noqa: F401  (every entity class, so the walk sees them all)
    from pim.domain.indexes import Children, Turnstile

    def subclasses(cls: type[Any]) -> list[type[Any]]:
        return [cls] + [d for c in cls.__subclasses__() for d in subclasses(c)]

    lines = {f"state:{SNAPSHOT_STATE_VERSION}"}
    aggregates: list[type[Any]] = [*subclasses(Entity), Children, Turnstile]
    for aggregate in aggregates:
        lines.add(f"{get_topic(aggregate)}:{getattr(aggregate, 'class_version', 1)}")
        for name in dir(aggregate):
            member = getattr(aggregate, name)
            if isinstance(member, type) and issubclass(member, CatalogEvent):
                lines.add(f"{get_topic(member)}:{getattr(member, 'class_version', 1)}")
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()[:16]


class StateSnapshot(CanSnapshotAggregate[str], metaclass=MetaDomainEvent):
    """An aggregate's whole state at one version: a cache of its replay, never the truth.

    The log alone defines an aggregate; a snapshot only saves replaying the events up to its
    version. Kept one per aggregate (the latest), outside the log, written after the events
    it summarises committed, tagged with ``snapshot_schema()``: one taken before an event
    class's version changed (a new upcaster would never see it) or before
    SNAPSHOT_STATE_VERSION was bumped is ignored. Nothing else depends on them."""

    originator_id: str
    originator_version: int
    timestamp: datetime
    topic: str
    state: dict[str, Any]

    @classmethod
    def of(cls, aggregate: Any) -> StateSnapshot:
        state = dict(vars(aggregate))
        for bookkeeping in ("_id", "_version", "_pending_events"):
            state.pop(bookkeeping, None)
        # MetaDomainEvent makes the class a frozen dataclass, which mypy cannot see
        return cls(  # type: ignore[call-arg]
            originator_id=aggregate.id,
            originator_version=aggregate.version,
            timestamp=cls.create_timestamp(),
            topic=get_topic(type(aggregate)),
            state=state,
        )
