"""Snapshots are a cache of a replay: an aggregate loaded from its latest snapshot plus the
events after it is exactly the aggregate replayed from its first event, at any version."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pim.domain.context import Actor
from pim.domain.errors import NotFound
from pim.domain.indexes import Children, children_id
from pim.domain.product import Product
from pim.eventstore import (
    SNAPSHOT_EVERY,
    CatalogApplication,
    EventStore,
    StateSnapshot,
    snapshot_schema,
)
from pim.infra.database import eventsourcing_env, run_ddl
from pim.infra.schema import SNAPSHOTS_DDL, SNAPSHOTS_TABLE

ACTOR = Actor(str(uuid.uuid4()), str(uuid.uuid4()), "snapshot-test", None, "req-1")


@pytest.fixture
def stores(make_database: Any) -> Iterator[tuple[EventStore, EventStore, str]]:
    """(a store that snapshots, one that only replays, the database URL) on one log."""
    url = make_database()
    app = CatalogApplication(env=eventsourcing_env(url))
    with psycopg.connect(url) as conn:
        run_ddl(conn, SNAPSHOTS_DDL)
    try:
        yield EventStore(app, snapshots_table=SNAPSHOTS_TABLE), EventStore(app), url
    finally:
        app.close()


def _state(aggregate: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(aggregate).items() if k != "_pending_events"}


def _snapshot_row(url: str, full_id: str) -> tuple[int, str] | None:
    """(version, schema fingerprint) of the aggregate's stored snapshot, if it has one."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            f"SELECT originator_version, schema FROM {SNAPSHOTS_TABLE} WHERE originator_id = %s",
            (full_id,),
        ).fetchone()
    return (int(row[0]), str(row[1])) if row else None


def _snapshot_version(url: str, full_id: str) -> int | None:
    row = _snapshot_row(url, full_id)
    return row[0] if row else None


def test_a_product_loads_from_its_snapshot_exactly_as_replayed(
    stores: tuple[EventStore, EventStore, str],
) -> None:
    snapshotting, replaying, url = stores
    product = Product.create(ACTOR, str(uuid.uuid4()), {"title": "t0", "attributes": {"a": 1}})
    snapshotting.save(product)
    for i in range(1, 100):
        product.update(
            ACTOR,
            {"title": f"t{i}", "status": "DRAFT" if i % 2 else "ACTIVE", "attributes": {"a": i}},
        )
        snapshotting.save(product)
    assert product.version == 100
    assert _snapshot_version(url, product.id) == 3 * SNAPSHOT_EVERY  # the latest multiple

    for version in (None, 1, SNAPSHOT_EVERY - 1, SNAPSHOT_EVERY, 3 * SNAPSHOT_EVERY, 97, 100):
        loaded = snapshotting.find(product.id, version=version)
        replayed = replaying.find(product.id, version=version)
        assert _state(loaded) == _state(replayed), version
        assert loaded.version == (version or 100)
    # and it takes new events like any loaded aggregate
    loaded = snapshotting.load(Product, ACTOR, product.entity_id)
    loaded.update(ACTOR, {"title": "after"})
    snapshotting.save(loaded)
    assert replaying.find(product.id).fields["title"] == "after"


def test_a_children_list_and_a_deleted_entity_load_from_snapshots_exactly(
    stores: tuple[EventStore, EventStore, str],
) -> None:
    snapshotting, replaying, url = stores
    list_id = children_id(ACTOR.tenant_id, str(uuid.uuid4()))
    children = Children.start(ACTOR, list_id)
    for i in range(70):
        children.add(ACTOR, f"child-{i}", "variant" if i % 3 else "media")
        if i % 10 == 9:
            children.remove(ACTOR, f"child-{i - 5}")
        snapshotting.save(children)
    assert _snapshot_version(url, list_id) is not None
    assert _state(snapshotting.find(list_id)) == _state(replaying.find(list_id))

    product = Product.create(ACTOR, str(uuid.uuid4()), {"title": "doomed"})
    for i in range(SNAPSHOT_EVERY):
        product.update(ACTOR, {"title": f"doomed {i}"})
    product.delete(ACTOR)
    snapshotting.save(product)  # one save crossing a multiple of SNAPSHOT_EVERY
    assert _snapshot_version(url, product.id) == SNAPSHOT_EVERY + 2
    assert _state(snapshotting.find(product.id)) == _state(replaying.find(product.id))
    with pytest.raises(NotFound):
        snapshotting.load(Product, ACTOR, product.entity_id)


def test_events_written_after_a_snapshot_by_another_writer_are_applied(
    stores: tuple[EventStore, EventStore, str],
) -> None:
    snapshotting, replaying, url = stores
    product = Product.create(ACTOR, str(uuid.uuid4()), {"title": "shared"})
    for i in range(SNAPSHOT_EVERY - 1):
        product.update(ACTOR, {"title": f"shared {i}"})
    snapshotting.save(product)
    assert _snapshot_version(url, product.id) == SNAPSHOT_EVERY
    # a store without snapshots (an older release, a tool) appends more events
    other = replaying.find(product.id)
    other.update(ACTOR, {"title": "written elsewhere"})
    replaying.save(other)
    loaded = snapshotting.find(product.id)
    assert loaded.version == SNAPSHOT_EVERY + 1
    assert loaded.fields["title"] == "written elsewhere"


def test_a_snapshot_taken_under_another_event_schema_is_ignored(
    stores: tuple[EventStore, EventStore, str],
) -> None:
    """An upcaster added later never sees state already in a snapshot: snapshots carry the
    fingerprint of the event classes' versions, and one that differs is not used."""
    snapshotting, replaying, url = stores
    product = Product.create(ACTOR, str(uuid.uuid4()), {"title": "tagged"})
    for i in range(SNAPSHOT_EVERY - 1):
        product.update(ACTOR, {"title": f"tagged {i}"})
    snapshotting.save(product)
    assert _snapshot_row(url, product.id) == (SNAPSHOT_EVERY, snapshot_schema())
    with psycopg.connect(url) as conn:
        # as if taken by a release whose events were shaped otherwise, with a state that
        # would show if it were used
        stale = snapshotting.app.mapper.to_stored_event(StateSnapshot.of(product)).state
        stale = stale.replace(b'"tagged 30"', b'"from an older schema"')
        conn.execute(
            f"UPDATE {SNAPSHOTS_TABLE} SET schema = 'older', state = %s WHERE originator_id = %s",
            (stale, product.id),
        )
    loaded = snapshotting.find(product.id)
    assert loaded.fields["title"] == "tagged 30"
    assert _state(loaded) == _state(replaying.find(product.id))
    # the next snapshot replaces the stale one, whatever its version
    for i in range(SNAPSHOT_EVERY):
        loaded.update(ACTOR, {"title": f"again {i}"})
    snapshotting.save(loaded)
    assert _snapshot_row(url, product.id) == (2 * SNAPSHOT_EVERY, snapshot_schema())
