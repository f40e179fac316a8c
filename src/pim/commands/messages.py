"""Commands: what a client asked the service to do, decoded and typed at the edge. Every
write goes through one of these and the command bus (API requests, bulk job batches, reverts,
job submissions).

Every resource shares the same three commands; ``entity_type`` names the resource and
``parent_id`` the parent of a nested resource (a variant's product)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

from pim.domain.context import Actor
from pim.infra.idempotency import Receipt

# The answer an idempotent request will give, from the resource as the command leaves it:
# recorded in the write's transaction (see pim.infra.idempotency).
Answer = Callable[[dict[str, Any]], Receipt]


def new_id() -> str:
    return str(uuid4())


@dataclass(frozen=True, slots=True)
class CreateEntity:
    actor: Actor
    entity_type: str
    values: Mapping[str, Any]
    parent_id: str | None = None
    # Products only: variants created atomically with the product.
    variants: Sequence[Mapping[str, Any]] = ()
    entity_id: str = field(default_factory=new_id)
    answer: Answer | None = None


@dataclass(frozen=True, slots=True)
class UpdateEntity:
    actor: Actor
    entity_type: str
    entity_id: str
    values: Mapping[str, Any]
    expected_version: int | None = None
    parent_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeleteEntity:
    actor: Actor
    entity_type: str
    entity_id: str
    expected_version: int | None = None
    parent_id: str | None = None


@dataclass(frozen=True, slots=True)
class RevertProduct:
    actor: Actor
    entity_id: str
    version: int
    expected_version: int | None = None
    answer: Answer | None = None


@dataclass(frozen=True, slots=True)
class SubmitJob:
    """Record a job (a bulk change, an import, an export); the worker runs it."""

    actor: Actor
    job_type: str
    payload: Mapping[str, Any]
    dry_run: bool = False
    job_id: str = field(default_factory=new_id)
    answer: Answer | None = None

    @property
    def entity_id(self) -> str:
        return self.job_id


CatalogCommand = CreateEntity | UpdateEntity | DeleteEntity | RevertProduct
Command = CatalogCommand | SubmitJob
