"""The catalog log's read models: the list every runner, rebuild and verify works from."""

from __future__ import annotations

from pim.projections.base import Projection
from pim.projections.entities import EntitiesView
from pim.projections.products import ProductsView
from pim.projections.stats import StatsView
from pim.projections.validation import ValidationView


def catalog_projections() -> list[Projection]:
    """The read models of the catalog log (each its own tables and tracking)."""
    return [ProductsView(), EntitiesView(), StatsView(), ValidationView()]
