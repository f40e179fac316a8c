"""Command handlers: load, make the domain call, let the resource's policy apply the rules that
span aggregates. A handler *applies* its command to a unit of work; committing is the bus's
(one command per transaction) or a batch's (many). The same handlers serve every resource:
what differs is declared by each resource type (domain/resource.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pim.commands.messages import (
    CatalogCommand,
    CreateEntity,
    DeleteEntity,
    RevertProduct,
    UpdateEntity,
    new_id,
)
from pim.commands.unit_of_work import UnitOfWork
from pim.domain.entity import Entity
from pim.domain.errors import Conflict, FieldError, NotFound, ValidationFailed
from pim.domain.product import Product
from pim.domain.registry import ENTITY_BY_TYPE, RESOURCE_BY_TYPE
from pim.domain.resource import ResourceType, response_fields
from pim.domain.variant import Variant


def _prefixed(error: ValidationFailed, prefix: str) -> ValidationFailed:
    return ValidationFailed(
        [FieldError(f"{prefix}.{e.field}", e.code, e.message) for e in error.errors]
    )


def _parent_field(resource: ResourceType) -> str:
    """The field of a nested entity that names its parent (a variant's ``product_id``)."""
    return f"{resource.parent}_id"


def _load(uow: UnitOfWork, resource: ResourceType, entity_id: str, parent_id: str | None) -> Entity:
    entity = uow.get(resource.entity, entity_id)
    if resource.parent is not None and parent_id is not None:
        # A nested resource is only reachable through its own parent.
        uow.get(ENTITY_BY_TYPE[resource.parent], parent_id)
        if entity.fields.get(_parent_field(resource)) != parent_id:
            raise NotFound(f"{resource.label} not found")
    return entity


def _create(
    uow: UnitOfWork,
    resource: ResourceType,
    entity_id: str,
    values: Mapping[str, Any],
    parent_id: str | None,
) -> Entity:
    fields = resource.entity.normalise(values, current=None)
    if resource.parent is not None:
        fields[_parent_field(resource)] = parent_id
    entity = resource.entity.create(uow.actor, entity_id, fields)
    uow.add(entity)
    resource.policy.on_create(uow, entity)
    return entity


def apply_create(uow: UnitOfWork, cmd: CreateEntity) -> Entity:
    """Create an entity (and a product's nested variants)."""
    resource = RESOURCE_BY_TYPE[cmd.entity_type]
    if resource.parent is not None:
        if cmd.parent_id is None:
            raise NotFound(f"{resource.parent} not found")
        uow.get(ENTITY_BY_TYPE[resource.parent], cmd.parent_id)
    entity = _create(uow, resource, cmd.entity_id, cmd.values, cmd.parent_id)
    if not cmd.variants:
        return entity
    variant_ids = [new_id() for _ in cmd.variants]
    # The product's children list starts with its variants (one event, not one per variant).
    uow.children(cmd.entity_id, joining=dict.fromkeys(variant_ids, Variant.entity_type))
    variant = RESOURCE_BY_TYPE[Variant.entity_type]
    for index, (variant_id, values) in enumerate(zip(variant_ids, cmd.variants, strict=True)):
        try:
            _create(uow, variant, variant_id, values, cmd.entity_id)
        except ValidationFailed as error:
            raise _prefixed(error, f"variants[{index}]") from None
        except Conflict as error:
            field = f"variants[{index}].{error.field}" if error.field else None
            raise Conflict(error.detail, field) from None
    return entity


def apply_update(uow: UnitOfWork, cmd: UpdateEntity) -> Entity:
    """Merge-patch an entity (no event when nothing changes)."""
    resource = RESOURCE_BY_TYPE[cmd.entity_type]
    entity = _load(uow, resource, cmd.entity_id, cmd.parent_id)
    entity.check_version(cmd.expected_version)
    patch = resource.entity.normalise(cmd.values, current=entity.fields)
    before = dict(entity.fields)
    if entity.update(cmd.actor, patch):
        uow.touch(entity)
        resource.policy.on_update(uow, entity, before)
    return entity


def apply_delete(uow: UnitOfWork, cmd: DeleteEntity) -> Entity:
    """Delete an entity and what cascades from it."""
    entity = _load(uow, RESOURCE_BY_TYPE[cmd.entity_type], cmd.entity_id, cmd.parent_id)
    entity.check_version(cmd.expected_version)
    uow.delete(entity)
    return entity


def apply_revert(uow: UnitOfWork, cmd: RevertProduct) -> Entity:
    """Make a product's content what it was at an earlier version (a new event)."""
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
    earlier = uow.store.find(product.id, version=cmd.version)
    assert isinstance(earlier, Product)  # versions 1..current of a live product exist
    if earlier.deleted:
        raise ValidationFailed(
            [FieldError("version", "deleted", "the product was deleted at that version")]
        )
    before = dict(product.fields)
    if product.revert(cmd.actor, earlier):
        uow.touch(product)
        RESOURCE_BY_TYPE[Product.entity_type].policy.on_update(uow, product, before)
    return product


Apply = Callable[[UnitOfWork, Any], Entity]

APPLY: dict[type[Any], Apply] = {
    CreateEntity: apply_create,
    UpdateEntity: apply_update,
    DeleteEntity: apply_delete,
    RevertProduct: apply_revert,
}


def entity_type_of(cmd: CatalogCommand) -> str:
    return Product.entity_type if isinstance(cmd, RevertProduct) else cmd.entity_type


def apply(uow: UnitOfWork, cmd: CatalogCommand) -> Entity:
    """Apply a catalog command to a unit of work; the entity it touched."""
    return APPLY[type(cmd)](uow, cmd)


def prefetch_for(uow: UnitOfWork, cmd: CatalogCommand) -> None:
    """Load in one query what a command on an existing entity reads (its policy says)."""
    if isinstance(cmd, UpdateEntity | RevertProduct):
        policy = RESOURCE_BY_TYPE[entity_type_of(cmd)].policy
        uow.prefetch(policy.loads(uow, cmd.entity_id))


def resource_after(uow: UnitOfWork, cmd: CatalogCommand, entity: Entity) -> dict[str, Any] | None:
    """The entity as clients see it after the command; None once deleted."""
    if entity.deleted:
        return None
    resource = RESOURCE_BY_TYPE[entity_type_of(cmd)]
    rendered = resource.policy.resource(uow, entity)
    # Exactly the view's fields, in the order its read model renders them.
    return {name: rendered.get(name) for name in response_fields(resource.view)}
