"""Every entity type the catalog knows, and the audit name of each of its events."""

from __future__ import annotations

import re

from eventsourcing.utils import get_topic

from pim.domain.attribute import Attribute, AttributeGroup, Template
from pim.domain.brand import Brand
from pim.domain.category import Category
from pim.domain.entity import Entity
from pim.domain.media import Media
from pim.domain.product import Product
from pim.domain.variant import Variant

ENTITY_CLASSES: tuple[type[Entity], ...] = (
    Product,
    Variant,
    Category,
    Brand,
    Attribute,
    AttributeGroup,
    Template,
    Media,
)
ENTITY_BY_TYPE: dict[str, type[Entity]] = {cls.entity_type: cls for cls in ENTITY_CLASSES}

# Event class name -> audit verb.
VERBS = {"Created": "CREATED", "Updated": "UPDATED", "Deleted": "DELETED", "Reverted": "REVERTED"}


def _snake_upper(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


def _event_catalog() -> dict[str, tuple[str, str]]:
    """topic -> (entity_type, action), for every entity event (index aggregates excluded)."""
    out: dict[str, tuple[str, str]] = {}
    for cls in ENTITY_CLASSES:
        for event_name, verb in VERBS.items():
            event_cls = getattr(cls, event_name, None)
            if event_cls is None:
                continue
            out[get_topic(event_cls)] = (cls.entity_type, f"{_snake_upper(cls.__name__)}_{verb}")
    return out


EVENT_TOPICS: dict[str, tuple[str, str]] = _event_catalog()
ENTITY_TYPES: frozenset[str] = frozenset(t for t, _ in EVENT_TOPICS.values())
ACTIONS: frozenset[str] = frozenset(a for _, a in EVENT_TOPICS.values())


def topics_for(*, entity_type: str | None = None, action: str | None = None) -> list[str]:
    return [
        topic
        for topic, (etype, act) in EVENT_TOPICS.items()
        if (entity_type is None or etype == entity_type) and (action is None or act == action)
    ]
