"""Who acts, for which tenant and organisation: recorded on every event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Actor:
    tenant_id: str
    org_id: str
    actor: str
    actor_email: str | None
    request_id: str

    def event_meta(self) -> dict[str, Any]:
        """The fields every domain event carries (eventsourcing 9.5 has no event metadata)."""
        return {
            "tenant_id": self.tenant_id,
            "org_id": self.org_id,
            "actor": self.actor,
            "actor_email": self.actor_email,
            "request_id": self.request_id,
        }
