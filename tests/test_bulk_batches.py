"""A bulk batch loaded ahead of time (while the previous batch is applied) never applies a
change on top of stale state: if an item changed meanwhile, the batch is redone fresh."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from pim.bootstrap import build_services
from pim.commands.messages import CreateEntity, UpdateEntity
from pim.domain.context import Actor
from pim.domain.indexes import Children, children_id
from pim.domain.variant import Variant
from pim.jobs import bulk
from pim.jobs.payloads import BulkUpdatePayload
from pim.services import Services
from pim.settings import Settings


@pytest.fixture
def services(make_database: Any, tmp_path: Path) -> Iterator[Services]:
    settings = Settings.from_env(
        {"PIM_DATABASE_URL": make_database(), "PIM_DATA_DIR": str(tmp_path / "data")}
    )
    built = build_services(settings)
    yield built
    built.close()


def test_a_batch_loaded_ahead_is_redone_when_an_item_changed_meanwhile(
    services: Services,
) -> None:
    store, bus = services.store, services.bus
    actor = Actor(str(uuid.uuid4()), str(uuid.uuid4()), "tester", None, "req-1")
    product_id = str(uuid.uuid4())
    bus.handle(
        CreateEntity(
            actor,
            "product",
            {"title": "Lamp"},
            variants=[{"sku": "LAMP-1", "price": "10.00", "currency": "EUR"}],
            entity_id=product_id,
        )
    )
    children = store.find(children_id(actor.tenant_id, product_id))
    assert isinstance(children, Children)
    [variant_id] = children.of_type("variant")

    payload = msgspec.convert(
        {"product_ids": [product_id], "price": {"op": "multiply", "value": "2"}},
        BulkUpdatePayload,
    )
    job_id = str(uuid.uuid4())
    work = bulk.update_items(actor, job_id, payload, [product_id])
    prepared = bulk.prepare_batch(bus, actor, work, 0, 1)
    # Meanwhile someone reprices the variant: the prepared batch holds 10.00.
    bus.handle(UpdateEntity(actor, "variant", variant_id, {"price": "20.00"}, parent_id=product_id))
    bulk.apply_batch(bus, actor, job_id, work, 0, 1, dry_run=False, prepared=prepared)
    variant = store.load(Variant, actor, variant_id)
    assert variant.fields["price"] == "40.00"  # 20.00 x 2, not 10.00 x 2
    assert variant.version == 3  # created, repriced by hand, multiplied once


def test_a_batch_loads_what_its_commands_read_in_a_few_queries_not_one_per_item(
    services: Services,
) -> None:
    """A bulk update of 50 products loads them (and what a product update reads: its children
    list) up front; applying the batch makes no further query per item."""
    store, bus = services.store, services.bus
    actor = Actor(str(uuid.uuid4()), str(uuid.uuid4()), "tester", None, "req-1")
    ids = [str(uuid.uuid4()) for _ in range(50)]
    for product_id in ids:
        bus.handle(CreateEntity(actor, "product", {"title": "Lamp"}, entity_id=product_id))
    payload = msgspec.convert({"product_ids": ids, "set": {"status": "ARCHIVED"}},
                              BulkUpdatePayload)  # fmt: skip
    work = bulk.update_items(actor, str(uuid.uuid4()), payload, ids)
    calls: list[int] = []
    load_many = store.load_many

    def counting(full_ids: Any, **kwargs: Any) -> Any:
        calls.append(len(full_ids))
        return load_many(full_ids, **kwargs)

    store.load_many = counting  # type: ignore[method-assign]
    prepared = bulk.prepare_batch(bus, actor, work, 0, len(ids))
    assert len(calls) <= 2, calls
    bulk.apply_batch(bus, actor, str(uuid.uuid4()), work, 0, len(ids), dry_run=False,
                     prepared=prepared)  # fmt: skip
    assert len(calls) <= 3, calls
