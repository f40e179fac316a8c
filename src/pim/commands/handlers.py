"""Command handlers: load, make one domain call, save. Business rules live in the aggregates."""

from __future__ import annotations

from dataclasses import dataclass

from pim.commands.messages import CreateProduct, DeleteProduct, UpdateProduct
from pim.domain.product import Product
from pim.eventstore import CatalogStore


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a command did: the entity it touched and the log position it reached (None when
    it changed nothing)."""

    entity_id: str
    position: int | None


def handle_create_product(cmd: CreateProduct, store: CatalogStore) -> Outcome:
    fields = Product.normalise(cmd.values, creating=True)
    product = Product.create(cmd.actor, cmd.product_id, fields)
    return Outcome(cmd.product_id, store.save(product))


def handle_update_product(cmd: UpdateProduct, store: CatalogStore) -> Outcome:
    patch = Product.normalise(cmd.values, creating=False)
    product = store.load(Product, cmd.actor, cmd.product_id)
    product.check_version(cmd.expected_version)
    product.update(cmd.actor, patch)
    return Outcome(cmd.product_id, store.save(product))


def handle_delete_product(cmd: DeleteProduct, store: CatalogStore) -> Outcome:
    product = store.load(Product, cmd.actor, cmd.product_id)
    product.check_version(cmd.expected_version)
    product.delete(cmd.actor)
    return Outcome(cmd.product_id, store.save(product))
