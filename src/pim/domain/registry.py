"""Every resource type the catalog knows (their declarations: see ``domain/resource.py``), and
what is derived from the list: the entity classes, the audit name of each of their events."""

from __future__ import annotations

import re

from eventsourcing.utils import get_topic

from pim.domain.attribute import ATTRIBUTE, ATTRIBUTE_GROUP, TEMPLATE
from pim.domain.brand import BRAND
from pim.domain.category import CATEGORY
from pim.domain.entity import Entity
from pim.domain.media import MEDIA
from pim.domain.product import PRODUCT
from pim.domain.resource import ResourceType
from pim.domain.variant import VARIANT

# The one list to extend with a new resource type (in the order the API documents them).
RESOURCE_TYPES: tuple[ResourceType, ...] = (
    PRODUCT,
    VARIANT,
    CATEGORY,
    BRAND,
    ATTRIBUTE,
    ATTRIBUTE_GROUP,
    TEMPLATE,
    MEDIA,
)
RESOURCE_BY_TYPE: dict[str, ResourceType] = {r.entity_type: r for r in RESOURCE_TYPES}
ENTITY_CLASSES: tuple[type[Entity], ...] = tuple(r.entity for r in RESOURCE_TYPES)
ENTITY_BY_TYPE: dict[str, type[Entity]] = {r.entity_type: r.entity for r in RESOURCE_TYPES}

for _resource in RESOURCE_TYPES:  # a declaration naming a parent that does not exist
    assert _resource.parent is None or _resource.parent in RESOURCE_BY_TYPE, _resource

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
