"""Attribute definitions (typed product values), attribute groups."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal
from uuid import UUID

from msgspec import UNSET, UnsetType

from pim.domain.entity import Current, Entity, Fields, Values
from pim.domain.policy import Policy, Workspace, changed
from pim.domain.resource import ListFilter, ResourceInput, ResourceType, ResourceView
from pim.domain.rules import (
    ATTRIBUTE_KEY_PATTERN,
    FieldErrors,
    keyify,
    name_field,
    one_of,
    optional_text_field,
    reference_list,
    text,
)

ATTRIBUTE_TYPES = ("TEXT", "NUMBER", "BOOLEAN", "SELECT")
OPTION_MAX = 255
OPTIONS_MAX = 1_000
TEXT_VALUE_MAX = 10_000


def _key(
    errors: FieldErrors,
    values: Mapping[str, Any],
    out: dict[str, Any],
    current: Mapping[str, Any] | None,
    *,
    derive: bool = False,
) -> None:
    """``key``: required and immutable; with ``derive`` an absent key on create comes from
    the name (``"Main specs"`` -> ``main_specs``), as a category's slug does."""
    if "key" in values:
        key = values["key"]
        if not isinstance(key, str) or not ATTRIBUTE_KEY_PATTERN.match(key):
            errors.add("key", "invalid_format", "must match ^[a-z][a-z0-9_]{0,63}$")
        elif current is not None and key != current.get("key"):
            errors.add("key", "immutable", "cannot change once created")
        else:
            out["key"] = key
    elif current is None and derive and isinstance(out.get("name"), str):
        derived = keyify(out["name"])
        if derived:
            out["key"] = derived
        else:
            errors.add("key", "required", "give a key: none can be derived from the name")
    elif current is None:
        errors.add("key", "required", "is required")


class Attribute(Entity):
    entity_type: ClassVar[str] = "attribute"
    defaults: ClassVar[dict[str, Any]] = {"type": "TEXT", "options": None, "description": None}

    @classmethod
    def check(cls, values: Values, out: Fields, errors: FieldErrors, current: Current) -> None:
        name_field(errors, values, out, current=current)
        optional_text_field(errors, values, out, "description")
        _key(errors, values, out, current)
        if "type" in values:
            kind = one_of(errors, "type", values["type"], ATTRIBUTE_TYPES)
            if current is not None and kind is not None and kind != current.get("type"):
                errors.add("type", "immutable", "cannot change once created (values depend on it)")
            else:
                out["type"] = kind
        if "options" in values:
            out["options"] = _options(errors, values["options"])
        state = {**cls.defaults, **(current or {}), **{k: v for k, v in out.items()}}
        if state.get("type") == "SELECT" and not state.get("options"):
            errors.add("options", "required", "a SELECT attribute needs at least one option")
        if state.get("type") != "SELECT" and state.get("options"):
            errors.add("options", "not_allowed", "only SELECT attributes have options")

    def check_value(self, value: Any) -> str | None:
        """Why ``value`` is not a valid value of this attribute (None when it is)."""
        kind = self.fields.get("type", "TEXT")
        if kind == "TEXT":
            if not isinstance(value, str):
                return "must be a string (TEXT attribute)"
            if len(value) > TEXT_VALUE_MAX:
                return f"must be at most {TEXT_VALUE_MAX} characters"
        elif kind == "NUMBER":
            if isinstance(value, bool) or not isinstance(value, int | float):
                return "must be a number (NUMBER attribute)"
        elif kind == "BOOLEAN":
            if not isinstance(value, bool):
                return "must be true or false (BOOLEAN attribute)"
        elif kind == "SELECT":
            options = self.fields.get("options") or []
            if value not in options:
                return f"must be one of the options: {', '.join(options)}"
        return None


def _options(errors: FieldErrors, value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        errors.add("options", "invalid_type", "must be a non-empty array of strings")
        return None
    if len(value) > OPTIONS_MAX:
        errors.add("options", "too_long", f"at most {OPTIONS_MAX} options")
        return None
    out: list[str] = []
    for index, option in enumerate(value):
        item = text(
            errors,
            f"options[{index}]",
            option,
            min_length=1,
            max_length=OPTION_MAX,
            single_line=True,
        )
        if item is None:
            continue
        if item in out:
            errors.add(f"options[{index}]", "duplicate", "is listed twice")
            continue
        out.append(item)
    return out


class AttributeGroup(Entity):
    entity_type: ClassVar[str] = "attribute_group"
    defaults: ClassVar[dict[str, Any]] = {"description": None, "attribute_ids": []}

    @classmethod
    def check(cls, values: Values, out: Fields, errors: FieldErrors, current: Current) -> None:
        name_field(errors, values, out, current=current)
        optional_text_field(errors, values, out, "description")
        _key(errors, values, out, current, derive=True)
        if "attribute_ids" in values:
            ids = values["attribute_ids"]
            out["attribute_ids"] = (
                [] if ids is None else reference_list(errors, "attribute_ids", ids)
            )


class Template(Entity):
    """A product type: which attributes its products carry and which are required."""

    entity_type: ClassVar[str] = "template"
    defaults: ClassVar[dict[str, Any]] = {
        "description": None,
        "attribute_ids": [],
        "required_attribute_ids": [],
    }

    @classmethod
    def check(cls, values: Values, out: Fields, errors: FieldErrors, current: Current) -> None:
        name_field(errors, values, out, current=current)
        optional_text_field(errors, values, out, "description")
        for field in ("attribute_ids", "required_attribute_ids"):
            if field in values:
                ids = values[field]
                out[field] = [] if ids is None else reference_list(errors, field, ids)
        state = {**cls.defaults, **(current or {}), **out}
        allowed = set(state.get("attribute_ids") or [])
        for index, ref in enumerate(state.get("required_attribute_ids") or []):
            if ref not in allowed:
                errors.add(
                    f"required_attribute_ids[{index}]",
                    "not_in_attribute_ids",
                    "required attributes must also be listed in attribute_ids",
                )


# -- resources -----------------------------------------------------------------------------


class AttributeInput(ResourceInput, kw_only=True):
    name: str | UnsetType | None = UNSET
    key: str | UnsetType = UNSET
    type: Literal["TEXT", "NUMBER", "BOOLEAN", "SELECT"] | UnsetType = UNSET
    options: list[str] | UnsetType | None = UNSET
    description: str | UnsetType | None = UNSET


class AttributeView(ResourceView, kw_only=True):
    name: str
    key: str
    type: str
    options: list[str] | None
    description: str | None


class AttributeGroupInput(ResourceInput, kw_only=True):
    name: str | UnsetType | None = UNSET
    key: str | UnsetType = UNSET
    description: str | UnsetType | None = UNSET
    attribute_ids: list[UUID] | UnsetType | None = UNSET


class AttributeGroupView(ResourceView, kw_only=True):
    name: str
    key: str | None = None
    description: str | None
    attribute_ids: list[UUID]


class TemplateInput(ResourceInput, kw_only=True):
    name: str | UnsetType | None = UNSET
    description: str | UnsetType | None = UNSET
    attribute_ids: list[UUID] | UnsetType | None = UNSET
    required_attribute_ids: list[UUID] | UnsetType | None = UNSET


class TemplateView(ResourceView, kw_only=True):
    name: str
    description: str | None
    attribute_ids: list[UUID]
    required_attribute_ids: list[UUID]


class KeyedPolicy(Policy):
    """A unique, immutable ``key`` per tenant, and lists of attributes that must exist."""

    def __init__(self, key_kind: str, reference_fields: tuple[str, ...] = ()) -> None:
        self.key_kind = key_kind
        self.reference_fields = reference_fields

    def _check_refs(self, ws: Workspace, entity: Entity, names: tuple[str, ...]) -> None:
        errors = FieldErrors()
        for field in names:
            for index, ref in enumerate(entity.fields.get(field) or []):
                if ws.find(Attribute, ref) is None:
                    errors.add(f"{field}[{index}]", "not_found", "no such attribute")
        errors.raise_if_any()

    def on_create(self, ws: Workspace, entity: Entity) -> None:
        key = entity.fields.get("key")
        if key:
            label = f"{entity.entity_type.replace('_', ' ')} key '{key}'"
            ws.claim(self.key_kind, key, entity.entity_id, label, field="key")
        self._check_refs(ws, entity, self.reference_fields)

    def on_update(self, ws: Workspace, entity: Entity, before: Mapping[str, Any]) -> None:
        moved = tuple(n for n in self.reference_fields if changed(entity, before, n))
        self._check_refs(ws, entity, moved)

    def on_delete(self, ws: Workspace, entity: Entity) -> None:
        if entity.fields.get("key"):
            ws.release(self.key_kind, entity.fields["key"], entity.entity_id)


ATTRIBUTE = ResourceType(
    Attribute,
    "attributes",
    "Attributes",
    AttributeInput,
    AttributeView,
    KeyedPolicy("attribute-key"),
    required=("name",),
    filters=(ListFilter("type", "choice", ATTRIBUTE_TYPES),),
)
ATTRIBUTE_GROUP = ResourceType(
    AttributeGroup,
    "attribute-groups",
    "Attribute groups",
    AttributeGroupInput,
    AttributeGroupView,
    KeyedPolicy("attribute-group-key", ("attribute_ids",)),
    required=("name",),
)
TEMPLATE = ResourceType(
    Template,
    "templates",
    "Templates",
    TemplateInput,
    TemplateView,
    KeyedPolicy("template-key", ("attribute_ids", "required_attribute_ids")),
    required=("name",),
)
