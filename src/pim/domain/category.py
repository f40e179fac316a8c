"""Categories: a tree per tenant, addressed by unique slug."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from uuid import UUID

from msgspec import UNSET, UnsetType

from pim.domain.entity import Current, Entity, Fields, Values
from pim.domain.errors import Conflict, FieldError, ValidationFailed
from pim.domain.policy import Policy, Workspace, changed
from pim.domain.resource import ListFilter, ResourceInput, ResourceType, ResourceView
from pim.domain.rules import (
    FieldErrors,
    name_field,
    optional_field,
    optional_text_field,
    reference,
    slug,
    slugify,
)

MAX_CATEGORY_DEPTH = 100


class Category(Entity):
    entity_type: ClassVar[str] = "category"
    defaults: ClassVar[dict[str, Any]] = {"description": None, "parent_id": None}

    @classmethod
    def check(cls, values: Values, out: Fields, errors: FieldErrors, current: Current) -> None:
        name_field(errors, values, out, current=current)
        if values.get("slug") is not None:
            out["slug"] = slug(errors, "slug", values["slug"])
        elif "slug" in values and current is not None:
            errors.add("slug", "required", "cannot be null")
        elif current is None and isinstance(out.get("name"), str):
            derived = slugify(out["name"])
            if derived:
                out["slug"] = derived
            else:
                errors.add("slug", "required", "give a slug: none can be derived from the name")
        optional_text_field(errors, values, out, "description")
        optional_field(errors, values, out, "parent_id", reference)


class CategoryInput(ResourceInput, kw_only=True):
    name: str | UnsetType | None = UNSET
    slug: str | UnsetType | None = UNSET
    description: str | UnsetType | None = UNSET
    parent_id: UUID | UnsetType | None = UNSET


class CategoryView(ResourceView, kw_only=True):
    name: str
    slug: str
    description: str | None
    parent_id: UUID | None


def _cycle(code: str, message: str) -> ValidationFailed:
    return ValidationFailed([FieldError("parent_id", code, message)])


class CategoryPolicy(Policy):
    """Slugs are unique per tenant; the tree has no loops and a bounded depth; a category
    with subcategories cannot be deleted."""

    def _check_parent(self, ws: Workspace, category: Entity) -> None:
        seen = {category.entity_id}
        current: str | None = category.fields.get("parent_id")
        depth = 0
        while current is not None:
            if current in seen:
                raise _cycle("cycle", "a category cannot be moved under itself or a descendant")
            parent = ws.find(Category, current)
            if parent is None:
                raise _cycle("not_found", "no such category")
            seen.add(current)
            current = parent.fields.get("parent_id")
            depth += 1
            if depth > MAX_CATEGORY_DEPTH:
                raise _cycle("too_deep", f"categories nest at most {MAX_CATEGORY_DEPTH} deep")

    @staticmethod
    def _claim_slug(ws: Workspace, category: Entity) -> None:
        slug_value = category.fields["slug"]
        ws.claim(
            "category-slug",
            slug_value,
            category.entity_id,
            f"category slug '{slug_value}'",
            field="slug",
        )

    def on_create(self, ws: Workspace, entity: Entity) -> None:
        self._claim_slug(ws, entity)
        self._check_parent(ws, entity)
        if entity.fields.get("parent_id"):
            ws.children(entity.fields["parent_id"]).add(ws.actor, entity.entity_id, "category")

    def on_update(self, ws: Workspace, entity: Entity, before: Mapping[str, Any]) -> None:
        if changed(entity, before, "slug"):
            ws.release("category-slug", before["slug"], entity.entity_id)
            self._claim_slug(ws, entity)
        if changed(entity, before, "parent_id"):
            # The cycle check reads the new parent's ancestors, which this move does not
            # write: concurrent moves pass one at a time, or two could close a loop.
            ws.pass_turnstile("category-tree", entity.entity_id)
            self._check_parent(ws, entity)
            if before.get("parent_id"):
                ws.children(before["parent_id"]).remove(ws.actor, entity.entity_id)
            if entity.fields.get("parent_id"):
                ws.children(entity.fields["parent_id"]).add(ws.actor, entity.entity_id, "category")

    def on_delete(self, ws: Workspace, entity: Entity) -> None:
        children = ws.children(entity.entity_id)
        if children.of_type("category"):
            raise Conflict("this category has subcategories; move or delete them first")
        children.close(ws.actor)
        ws.release("category-slug", entity.fields["slug"], entity.entity_id)
        if entity.fields.get("parent_id"):
            ws.children(entity.fields["parent_id"]).remove(ws.actor, entity.entity_id)


CATEGORY = ResourceType(
    Category,
    "categories",
    "Categories",
    CategoryInput,
    CategoryView,
    CategoryPolicy(),
    required=("name",),
    filters=(ListFilter("parent_id", "uuid"),),
)
