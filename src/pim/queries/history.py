"""History and time travel, read from the log itself (nothing is stored twice)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from psycopg import AsyncConnection, sql
from psycopg_pool import AsyncConnectionPool

from pim.domain.ids import aggregate_id
from pim.domain.indexes import children_id
from pim.domain.product import Product, ProductView
from pim.eventstore import EVENTS_TABLE, EventStore
from pim.queries.audit import to_entry


class HistoryEntry(msgspec.Struct, kw_only=True):
    version: int
    action: str
    actor: str
    actor_email: str | None
    org_id: str
    occurred_at: datetime
    changes: dict[str, dict[str, Any]]
    request_id: str
    position: int


class HistoryQueries:
    def __init__(self, pool: AsyncConnectionPool[AsyncConnection[Any]], store: EventStore) -> None:
        self.pool = pool
        self.store = store

    async def _events(self, originator_id: str) -> list[tuple[Any, ...]]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                sql.SQL(
                    "SELECT notification_id, originator_id, originator_version, topic, state"
                    " FROM {} WHERE originator_id = %s ORDER BY originator_version"
                ).format(sql.Identifier(EVENTS_TABLE)),
                (originator_id,),
                prepare=True,
            )
            return await cur.fetchall()

    async def history(self, tenant_id: str, product_id: UUID) -> list[HistoryEntry] | None:
        """Every version, oldest first (None when the product never existed)."""
        rows = await self._events(aggregate_id(tenant_id, product_id))
        entries = []
        for row in rows:
            entry = to_entry(self.store, row[0], row[1], row[2], row[3], bytes(row[4]))
            entries.append(
                HistoryEntry(
                    version=entry.entity_version,
                    action=entry.action,
                    actor=entry.actor,
                    actor_email=entry.actor_email,
                    org_id=entry.org_id,
                    occurred_at=entry.occurred_at,
                    changes=entry.changes,
                    request_id=entry.request_id,
                    position=entry.position,
                )
            )
        return entries or None

    async def product_at(
        self,
        tenant_id: str,
        product_id: UUID,
        *,
        version: int | None = None,
        as_of: datetime | None = None,
    ) -> ProductView | None:
        """The product as it was at a version or a time (None: not a live product then)."""
        rows = await self._events(aggregate_id(tenant_id, product_id))
        events = [self.store.decode(r[1], r[2], r[3], bytes(r[4])) for r in rows]
        if version is not None:
            events = [e for e in events if e.originator_version <= version]
            if not events or events[-1].originator_version != version:
                return None
        if as_of is not None:
            events = [e for e in events if e.timestamp <= as_of]
        if not events:
            return None
        product: Any = None
        for event in events:
            product = event.mutate(product)
        if not isinstance(product, Product) or product.deleted:
            return None
        moment = as_of if as_of is not None else events[-1].timestamp
        fields: dict[str, Any] = product.fields
        return msgspec.convert(
            {
                **{
                    name: fields.get(name)
                    for name in (
                        "title",
                        "description",
                        "category",
                        "status",
                        "brand_id",
                        "template_id",
                    )
                },
                "attributes": fields.get("attributes") or {},
                "id": product_id,
                "variant_count": await self._variant_count_at(tenant_id, str(product_id), moment),
                "version": product.version,
                "created_at": product.created_on,
                "updated_at": product.modified_on,
            },
            ProductView,
        )

    async def _variant_count_at(self, tenant_id: str, product_id: str, moment: datetime) -> int:
        rows = await self._events(children_id(tenant_id, product_id))
        children: Any = None
        for row in rows:
            event = self.store.decode(row[1], row[2], row[3], bytes(row[4]))
            if event.timestamp > moment:
                break
            children = event.mutate(children)
        if children is None:
            return 0
        return len(children.of_type("variant"))
