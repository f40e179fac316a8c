"""Commands: what a client asked the catalog to do, decoded and typed at the edge."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

from pim.domain.context import Actor


@dataclass(frozen=True, slots=True)
class CreateProduct:
    actor: Actor
    values: Mapping[str, Any]
    product_id: str = field(default_factory=lambda: str(uuid4()))


@dataclass(frozen=True, slots=True)
class UpdateProduct:
    actor: Actor
    product_id: str
    values: Mapping[str, Any]
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class DeleteProduct:
    actor: Actor
    product_id: str
    expected_version: int | None = None


Command = CreateProduct | UpdateProduct | DeleteProduct
