"""Rules that span aggregates, one policy per entity type: references that must exist in the
tenant, unique values, children lists and cascades. They read only the log (through the unit of
work), never a read model, and everything they change is saved in the command's transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pim.commands.unit_of_work import UnitOfWork
from pim.domain.attribute import Attribute, AttributeGroup, Template
from pim.domain.brand import Brand, brand_name_key
from pim.domain.category import Category
from pim.domain.entity import Entity
from pim.domain.errors import Conflict, FieldError, ValidationFailed
from pim.domain.media import Media
from pim.domain.product import Product
from pim.domain.rules import FieldErrors
from pim.domain.variant import Variant, option_signature

MAX_CATEGORY_DEPTH = 100


class Policy:
    """Default: no cross-aggregate rules."""

    entity: ClassVar[type[Entity]]

    def loads(self, uow: UnitOfWork, entity_id: str) -> list[str]:
        """What a command on this entity reads besides the entity (loaded with it, in one
        query)."""
        return [uow.entity_key(entity_id)]

    def resource(self, uow: UnitOfWork, entity: Entity) -> dict[str, Any]:
        """The entity as clients see it after the command (what its read model will show)."""
        return entity.as_resource()

    def on_create(self, uow: UnitOfWork, entity: Entity, parent_id: str | None) -> None:
        """Check references and claim unique values for a new entity."""

    def on_update(self, uow: UnitOfWork, entity: Entity, before: Mapping[str, Any]) -> None:
        """Same for changed fields (``before`` holds the previous values)."""

    def on_delete(self, uow: UnitOfWork, entity: Entity) -> None:
        """Release what the entity held and cascade to its children."""


def _changed(entity: Entity, before: Mapping[str, Any], name: str) -> bool:
    return before.get(name) != entity.fields.get(name)


def _require_refs(
    uow: UnitOfWork, errors: FieldErrors, field: str, ids: Sequence[str], cls: type[Entity]
) -> None:
    for index, ref in enumerate(ids):
        if uow.find(cls, ref) is None:
            errors.add(f"{field}[{index}]", "not_found", f"no such {cls.entity_type}")


class ProductPolicy(Policy):
    entity = Product

    def loads(self, uow: UnitOfWork, entity_id: str) -> list[str]:
        return [uow.entity_key(entity_id), uow.children_key(entity_id)]

    def resource(self, uow: UnitOfWork, entity: Entity) -> dict[str, Any]:
        assert isinstance(entity, Product)
        children = uow.find_children(entity.entity_id)
        return entity.as_resource(variant_count=len(children.of_type("variant")) if children else 0)

    def check(
        self,
        uow: UnitOfWork,
        fields: Mapping[str, Any],
        names: Sequence[str],
        patch_attributes: Mapping[str, Any] | None = None,
    ) -> None:
        errors = FieldErrors()
        category = fields.get("category") if "category" in names else None
        if category and uow.owner_of("category-slug", category) is None:
            errors.add("category", "not_found", "no category of this tenant has that slug")
        brand_id = fields.get("brand_id") if "brand_id" in names else None
        if brand_id and uow.find(Brand, brand_id) is None:
            errors.add("brand_id", "not_found", "no such brand")
        template_id = fields.get("template_id") if "template_id" in names else None
        if template_id and uow.find(Template, template_id) is None:
            errors.add("template_id", "not_found", "no such template")
        if "attributes" in names:
            values = (
                patch_attributes if patch_attributes is not None else fields.get("attributes") or {}
            )
            for key, value in values.items():
                if value is None:
                    continue
                owner = uow.owner_of("attribute-key", key)
                attribute = uow.find(Attribute, owner) if owner else None
                if attribute is None:
                    errors.add(
                        f"attributes.{key}",
                        "unknown_attribute",
                        "no attribute with this key is defined",
                    )
                    continue
                problem = attribute.check_value(value)
                if problem:
                    errors.add(f"attributes.{key}", "invalid_value", problem)
        errors.raise_if_any()

    def on_create(self, uow: UnitOfWork, entity: Entity, parent_id: str | None) -> None:
        self.check(uow, entity.fields, list(entity.fields))

    def on_update(self, uow: UnitOfWork, entity: Entity, before: Mapping[str, Any]) -> None:
        names = [n for n in entity.fields if _changed(entity, before, n)]
        patch = None
        if "attributes" in names:
            old = before.get("attributes") or {}
            patch = {k: v for k, v in entity.fields["attributes"].items() if old.get(k) != v}
        self.check(uow, entity.fields, names, patch)

    def on_delete(self, uow: UnitOfWork, entity: Entity) -> None:
        children = uow.children(entity.entity_id)
        children.close(uow.actor)
        for child_id, child_type in list(children.members.items()):
            cls = ENTITY_POLICIES[child_type].entity
            child = uow.find(cls, child_id)
            if child is not None and child.id not in uow.deleted:
                delete_entity(uow, child)


class VariantPolicy(Policy):
    entity = Variant

    @staticmethod
    def _claims(uow: UnitOfWork, variant: Variant) -> None:
        uow.claim(
            "sku",
            variant.fields["sku"],
            variant.entity_id,
            f"sku '{variant.fields['sku']}'",
            field="sku",
        )
        signature = option_signature(variant.fields.get("option_values") or {})
        if signature is not None:
            uow.claim(
                f"options:{variant.product_id}",
                signature,
                variant.entity_id,
                f"a variant of this product with option_values {signature}",
                field="option_values",
            )

    @staticmethod
    def _releases(uow: UnitOfWork, variant: Variant, fields: Mapping[str, Any]) -> None:
        uow.release("sku", fields["sku"], variant.entity_id)
        signature = option_signature(fields.get("option_values") or {})
        if signature is not None:
            uow.release(f"options:{variant.product_id}", signature, variant.entity_id)

    def on_create(self, uow: UnitOfWork, entity: Entity, parent_id: str | None) -> None:
        assert isinstance(entity, Variant)
        self._claims(uow, entity)
        uow.children(entity.product_id).add(uow.actor, entity.entity_id, "variant")

    def on_update(self, uow: UnitOfWork, entity: Entity, before: Mapping[str, Any]) -> None:
        assert isinstance(entity, Variant)
        if _changed(entity, before, "sku") or _changed(entity, before, "option_values"):
            self._releases(uow, entity, before)
            self._claims(uow, entity)

    def on_delete(self, uow: UnitOfWork, entity: Entity) -> None:
        assert isinstance(entity, Variant)
        self._releases(uow, entity, entity.fields)
        uow.children(entity.product_id).remove(uow.actor, entity.entity_id)
        own = uow.children(entity.entity_id)
        own.close(uow.actor)
        for media_id in own.of_type("media"):
            media = uow.find(Media, media_id)
            if media is not None and media.id not in uow.deleted:
                delete_entity(uow, media)


class CategoryPolicy(Policy):
    entity = Category

    def _check_parent(self, uow: UnitOfWork, category: Entity) -> None:
        parent_id = category.fields.get("parent_id")
        if parent_id is None:
            return
        seen = {category.entity_id}
        current: str | None = parent_id
        depth = 0
        while current is not None:
            if current in seen:
                raise ValidationFailed(
                    [
                        FieldError(
                            "parent_id",
                            "cycle",
                            "a category cannot be moved under itself or a descendant",
                        )
                    ]
                )
            parent = uow.find(Category, current)
            if parent is None:
                raise ValidationFailed([FieldError("parent_id", "not_found", "no such category")])
            seen.add(current)
            current = parent.fields.get("parent_id")
            depth += 1
            if depth > MAX_CATEGORY_DEPTH:
                raise ValidationFailed(
                    [
                        FieldError(
                            "parent_id",
                            "too_deep",
                            f"categories nest at most {MAX_CATEGORY_DEPTH} deep",
                        )
                    ]
                )

    def on_create(self, uow: UnitOfWork, entity: Entity, parent_id: str | None) -> None:
        uow.claim(
            "category-slug",
            entity.fields["slug"],
            entity.entity_id,
            f"category slug '{entity.fields['slug']}'",
            field="slug",
        )
        self._check_parent(uow, entity)
        if entity.fields.get("parent_id"):
            uow.children(entity.fields["parent_id"]).add(uow.actor, entity.entity_id, "category")

    def on_update(self, uow: UnitOfWork, entity: Entity, before: Mapping[str, Any]) -> None:
        if _changed(entity, before, "slug"):
            uow.release("category-slug", before["slug"], entity.entity_id)
            uow.claim(
                "category-slug",
                entity.fields["slug"],
                entity.entity_id,
                f"category slug '{entity.fields['slug']}'",
                field="slug",
            )
        if _changed(entity, before, "parent_id"):
            # The cycle check reads the new parent's ancestors, which this move does not
            # write: concurrent moves pass one at a time, or two could close a loop.
            uow.pass_turnstile("category-tree", entity.entity_id)
            self._check_parent(uow, entity)
            if before.get("parent_id"):
                uow.children(before["parent_id"]).remove(uow.actor, entity.entity_id)
            if entity.fields.get("parent_id"):
                uow.children(entity.fields["parent_id"]).add(
                    uow.actor, entity.entity_id, "category"
                )

    def on_delete(self, uow: UnitOfWork, entity: Entity) -> None:
        children = uow.children(entity.entity_id)
        if children.of_type("category"):
            raise Conflict("this category has subcategories; move or delete them first")
        children.close(uow.actor)
        uow.release("category-slug", entity.fields["slug"], entity.entity_id)
        if entity.fields.get("parent_id"):
            uow.children(entity.fields["parent_id"]).remove(uow.actor, entity.entity_id)


class BrandPolicy(Policy):
    entity = Brand

    def on_create(self, uow: UnitOfWork, entity: Entity, parent_id: str | None) -> None:
        name = entity.fields["name"]
        uow.claim(
            "brand-name",
            brand_name_key(name),
            entity.entity_id,
            f"brand name '{name}'",
            field="name",
        )

    def on_update(self, uow: UnitOfWork, entity: Entity, before: Mapping[str, Any]) -> None:
        if brand_name_key(before["name"]) != brand_name_key(entity.fields["name"]):
            uow.release("brand-name", brand_name_key(before["name"]), entity.entity_id)
            self.on_create(uow, entity, None)

    def on_delete(self, uow: UnitOfWork, entity: Entity) -> None:
        uow.release("brand-name", brand_name_key(entity.fields["name"]), entity.entity_id)


class KeyedPolicy(Policy):
    """Entities with a unique, immutable ``key`` and optional attribute references."""

    key_kind: ClassVar[str]
    reference_fields: ClassVar[tuple[str, ...]] = ()

    def _check_refs(self, uow: UnitOfWork, entity: Entity, names: Sequence[str]) -> None:
        errors = FieldErrors()
        for field in self.reference_fields:
            if field in names:
                _require_refs(uow, errors, field, entity.fields.get(field) or [], Attribute)
        errors.raise_if_any()

    def on_create(self, uow: UnitOfWork, entity: Entity, parent_id: str | None) -> None:
        if entity.fields.get("key"):
            uow.claim(
                self.key_kind,
                entity.fields["key"],
                entity.entity_id,
                f"{entity.entity_type.replace('_', ' ')} key '{entity.fields['key']}'",
                field="key",
            )
        self._check_refs(uow, entity, self.reference_fields)

    def on_update(self, uow: UnitOfWork, entity: Entity, before: Mapping[str, Any]) -> None:
        self._check_refs(
            uow, entity, [n for n in self.reference_fields if _changed(entity, before, n)]
        )

    def on_delete(self, uow: UnitOfWork, entity: Entity) -> None:
        if entity.fields.get("key"):
            uow.release(self.key_kind, entity.fields["key"], entity.entity_id)


class AttributePolicy(KeyedPolicy):
    entity = Attribute
    key_kind = "attribute-key"


class AttributeGroupPolicy(KeyedPolicy):
    entity = AttributeGroup
    key_kind = "attribute-group-key"
    reference_fields = ("attribute_ids",)


class TemplatePolicy(KeyedPolicy):
    entity = Template
    key_kind = "template-key"
    reference_fields = ("attribute_ids", "required_attribute_ids")


class MediaPolicy(Policy):
    entity = Media

    def _attach(self, uow: UnitOfWork, media: Entity) -> None:
        errors = FieldErrors()
        product_id = media.fields.get("product_id")
        variant_id = media.fields.get("variant_id")
        if product_id and uow.find(Product, product_id) is None:
            errors.add("product_id", "not_found", "no such product")
        variant = uow.find(Variant, variant_id) if variant_id else None
        if variant_id and variant is None:
            errors.add("variant_id", "not_found", "no such variant")
        if variant is not None and product_id and variant.product_id != product_id:
            errors.add("variant_id", "mismatch", "this variant belongs to another product")
        errors.raise_if_any()
        for parent in (product_id, variant_id):
            if parent:
                uow.children(parent).add(uow.actor, media.entity_id, "media")

    def _detach(self, uow: UnitOfWork, media: Entity, fields: Mapping[str, Any]) -> None:
        for parent in (fields.get("product_id"), fields.get("variant_id")):
            if parent:
                uow.children(parent).remove(uow.actor, media.entity_id)

    def on_create(self, uow: UnitOfWork, entity: Entity, parent_id: str | None) -> None:
        self._attach(uow, entity)

    def on_update(self, uow: UnitOfWork, entity: Entity, before: Mapping[str, Any]) -> None:
        if _changed(entity, before, "product_id") or _changed(entity, before, "variant_id"):
            self._detach(uow, entity, before)
            self._attach(uow, entity)

    def on_delete(self, uow: UnitOfWork, entity: Entity) -> None:
        self._detach(uow, entity, entity.fields)


ENTITY_POLICIES: dict[str, Policy] = {
    policy.entity.entity_type: policy
    for policy in (
        ProductPolicy(),
        VariantPolicy(),
        CategoryPolicy(),
        BrandPolicy(),
        AttributePolicy(),
        AttributeGroupPolicy(),
        TemplatePolicy(),
        MediaPolicy(),
    )
}


def delete_entity(uow: UnitOfWork, entity: Entity) -> None:
    """Delete an entity and everything that cascades from it, in this unit of work."""
    uow.deleted.add(entity.id)
    ENTITY_POLICIES[entity.entity_type].on_delete(uow, entity)
    entity.delete(uow.actor)
    uow.touch(entity)
