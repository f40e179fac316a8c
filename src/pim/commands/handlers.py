"""Command handlers: load, make the domain call, save. Entity rules live in the aggregates,
cross-aggregate rules in the policies; the same three handlers serve every resource."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pim.commands.messages import (
    CreateEntity,
    DeleteEntity,
    RevertProduct,
    UpdateEntity,
    new_id,
)
from pim.commands.policies import ENTITY_POLICIES, delete_entity
from pim.commands.unit_of_work import UnitOfWork
from pim.domain.entity import Entity
from pim.domain.errors import Conflict, FieldError, NotFound, ValidationFailed
from pim.domain.product import Product
from pim.domain.variant import Variant
from pim.eventstore import EventStore

# Nested resources and the type of the entity in their path.
PARENT_TYPES = {"variant": Product}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a command did: the entity it touched, the log position it reached (None when
    it changed nothing) and the entity as this command left it, as clients see it (None when
    it was deleted)."""

    entity_id: str
    position: int | None
    resource: dict[str, Any] | None = None


def _prefixed(error: ValidationFailed, prefix: str) -> ValidationFailed:
    return ValidationFailed(
        [FieldError(f"{prefix}.{e.field}", e.code, e.message) for e in error.errors]
    )


def _load(uow: UnitOfWork, entity_type: str, entity_id: str, parent_id: str | None) -> Entity:
    cls = ENTITY_POLICIES[entity_type].entity
    entity = uow.get(cls, entity_id)
    if parent_id is not None:
        # A nested resource is only reachable through its own parent.
        uow.get(PARENT_TYPES[entity_type], parent_id)
        if entity.fields.get("product_id") != parent_id:
            raise NotFound(f"{entity_type} not found")
    return entity


def _create(
    uow: UnitOfWork,
    entity_type: str,
    entity_id: str,
    values: Mapping[str, Any],
    parent_id: str | None,
) -> Entity:
    policy = ENTITY_POLICIES[entity_type]
    fields = policy.entity.normalise(values, current=None)
    if entity_type == "variant":
        fields["product_id"] = parent_id
    entity = policy.entity.create(uow.actor, entity_id, fields)
    uow.add(entity)
    policy.on_create(uow, entity, parent_id)
    return entity


def create_in(uow: UnitOfWork, cmd: CreateEntity) -> Entity:
    """Create an entity (and a product's nested variants) inside a unit of work."""
    parent_type = PARENT_TYPES.get(cmd.entity_type)
    if parent_type is not None:
        if cmd.parent_id is None:
            raise NotFound(f"{parent_type.entity_type} not found")
        uow.get(parent_type, cmd.parent_id)
    entity = _create(uow, cmd.entity_type, cmd.entity_id, cmd.values, cmd.parent_id)
    if not cmd.variants:
        return entity
    variant_ids = [new_id() for _ in cmd.variants]
    # The product's children list starts with its variants (one event, not one per variant).
    uow.children(cmd.entity_id, joining=dict.fromkeys(variant_ids, Variant.entity_type))
    for index, (variant_id, variant_values) in enumerate(
        zip(variant_ids, cmd.variants, strict=True)
    ):
        try:
            _create(uow, Variant.entity_type, variant_id, variant_values, cmd.entity_id)
        except ValidationFailed as error:
            raise _prefixed(error, f"variants[{index}]") from None
        except Conflict as error:
            field = f"variants[{index}].{error.field}" if error.field else None
            raise Conflict(error.detail, field) from None
    return entity


def update_in(uow: UnitOfWork, cmd: UpdateEntity) -> Entity:
    """Merge-patch an entity inside a unit of work (no event when nothing changes)."""
    entity = _load(uow, cmd.entity_type, cmd.entity_id, cmd.parent_id)
    entity.check_version(cmd.expected_version)
    patch = type(entity).normalise(cmd.values, current=entity.fields)
    before = dict(entity.fields)
    if entity.update(cmd.actor, patch):
        uow.touch(entity)
        ENTITY_POLICIES[cmd.entity_type].on_update(uow, entity, before)
    return entity


def delete_in(uow: UnitOfWork, cmd: DeleteEntity) -> None:
    entity = _load(uow, cmd.entity_type, cmd.entity_id, cmd.parent_id)
    entity.check_version(cmd.expected_version)
    delete_entity(uow, entity)


def handle_create(cmd: CreateEntity, store: EventStore) -> Outcome:
    uow = UnitOfWork(store, cmd.actor)
    entity = create_in(uow, cmd)
    resource = ENTITY_POLICIES[cmd.entity_type].resource(uow, entity)
    position = uow.commit(cmd.answer(resource) if cmd.answer else None)
    return Outcome(cmd.entity_id, position, resource)


def handle_update(cmd: UpdateEntity, store: EventStore) -> Outcome:
    uow = UnitOfWork(store, cmd.actor)
    policy = ENTITY_POLICIES[cmd.entity_type]
    uow.prefetch(policy.loads(uow, cmd.entity_id))
    entity = update_in(uow, cmd)
    position = uow.commit()
    return Outcome(cmd.entity_id, position, policy.resource(uow, entity))


def handle_delete(cmd: DeleteEntity, store: EventStore) -> Outcome:
    uow = UnitOfWork(store, cmd.actor)
    delete_in(uow, cmd)
    return Outcome(cmd.entity_id, uow.commit())


def handle_revert(cmd: RevertProduct, store: EventStore) -> Outcome:
    uow = UnitOfWork(store, cmd.actor)
    policy = ENTITY_POLICIES["product"]
    uow.prefetch(policy.loads(uow, cmd.entity_id))
    product = uow.get(Product, cmd.entity_id)
    product.check_version(cmd.expected_version)
    if not 1 <= cmd.version <= product.version:
        raise ValidationFailed(
            [
                FieldError(
                    "version", "not_found", f"this product has versions 1 to {product.version}"
                )
            ]
        )
    earlier = store.find(product.id, version=cmd.version)
    assert isinstance(earlier, Product)  # versions 1..current of a live product exist
    if earlier.deleted:
        raise ValidationFailed(
            [FieldError("version", "deleted", "the product was deleted at that version")]
        )
    before = dict(product.fields)
    if product.revert(cmd.actor, earlier):
        uow.touch(product)
        policy.on_update(uow, product, before)
    resource = policy.resource(uow, product)
    position = uow.commit(cmd.answer(resource) if cmd.answer else None)
    return Outcome(cmd.entity_id, position, resource)
