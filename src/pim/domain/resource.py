"""What a resource type is: one declaration per type, beside its entity, from which everything
else is derived — the commands' rules, the read queries and their filters, the routes and the
OpenAPI document. Adding a resource type means writing its entity and its ``ResourceType``
in one module of ``domain/`` and listing it in ``domain/registry.py``.

A declaration is data and pure code: the input and view shapes (msgspec Structs), the list
filters (names and kinds, interpreted by the queries), and the *policy* (``domain/policy.py``):
the rules that span aggregates. Nothing here does I/O."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec

from pim.domain.entity import Entity
from pim.domain.policy import Policy

UNSET = msgspec.UNSET
Unset = msgspec.UnsetType
# Fields a client may send back as it got them (GET -> edit -> PUT) and that are ignored.
READ_ONLY = frozenset({"id", "version", "created_at", "updated_at", "variant_count"})


class ResourceInput(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A request body: every field optional (merge patch), unknown fields refused. The
    read-only metadata is accepted and ignored."""

    id: Any = UNSET
    version: Any = UNSET
    created_at: Any = UNSET
    updated_at: Any = UNSET


class ResourceView(msgspec.Struct, kw_only=True):
    """A resource as clients see it (its read model renders exactly these fields)."""

    id: UUID
    version: int
    created_at: datetime
    updated_at: datetime


METADATA = ("version", "created_at", "updated_at")


@functools.cache
def response_fields(view: type[ResourceView]) -> tuple[str, ...]:
    """A view's fields in the order answers show them: the id, the resource's own fields,
    then the version and timestamps."""
    own = [name for name in view.__struct_fields__ if name != "id" and name not in METADATA]
    return ("id", *own, *METADATA)


def provided_fields(
    struct: msgspec.Struct, *, ignore: frozenset[str] = READ_ONLY
) -> dict[str, Any]:
    """The fields a client actually sent (UNSET ones left out), minus ``ignore``d ones."""
    out: dict[str, Any] = {}
    for name in struct.__struct_fields__:
        value = getattr(struct, name)
        if name in ignore or value is UNSET:
            continue
        if isinstance(value, UUID):
            value = str(value)
        elif isinstance(value, list):
            value = [str(v) if isinstance(v, UUID) else v for v in value]
        out[name] = value
    return out


@dataclass(frozen=True)
class ListFilter:
    """A query parameter of a resource's list that selects items by one field's value."""

    name: str  # the query parameter, and the field it matches
    kind: Literal["text", "uuid", "choice"] = "text"
    choices: tuple[str, ...] = ()
    column: bool = False  # a column of the read model (else a field of its document)


@dataclass(frozen=True)
class ResourceType:
    """Everything about one resource type that is not its entity's own rules."""

    entity: type[Entity]
    collection: str  # URL segment: /api/v1/pim/<collection>
    tag: str  # OpenAPI tag
    input: type[ResourceInput]
    view: type[ResourceView]
    policy: Policy = field(default_factory=Policy)
    filters: tuple[ListFilter, ...] = ()
    # Nested: reachable only through its parent's path (/products/{id}/variants); the
    # parent's entity type (a name: the parent's module imports this one's input).
    parent: str | None = None
    # Which read model serves it: the generic entities view or the products view.
    read_model: Literal["entities", "products"] = "entities"
    # Body fields accepted and ignored (read-only metadata, path parameters).
    ignore: frozenset[str] = READ_ONLY
    # Body fields a create must carry (the OpenAPI document marks them required; the entity's
    # check refuses a create without them).
    required: tuple[str, ...] = ()
    # Body fields only a create may carry (a product's variants).
    create_only: frozenset[str] = frozenset()
    # GET by id accepts ?version=N and ?as_of=<time> (read from the log).
    time_travel: bool = False
    # Lists ordered by sort_order first (media), else by creation.
    ordered: bool = False

    @property
    def entity_type(self) -> str:
        return self.entity.entity_type

    @property
    def label(self) -> str:
        return self.entity_type.replace("_", " ")
