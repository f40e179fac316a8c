"""The command bus: one table maps each command to its handler; it retries optimistic
concurrency conflicts and holds the answer until the read models have caught up."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

from pim.commands import handlers
from pim.commands.handlers import Outcome
from pim.commands.messages import (
    Command,
    CreateEntity,
    DeleteEntity,
    RevertProduct,
    UpdateEntity,
)
from pim.domain.errors import Conflict
from pim.eventstore import EventStore, IntegrityError

log = logging.getLogger(__name__)

Handler = Callable[[Any, EventStore], Outcome]

HANDLERS: dict[type[Any], Handler] = {
    CreateEntity: handlers.handle_create,
    UpdateEntity: handlers.handle_update,
    DeleteEntity: handlers.handle_delete,
    RevertProduct: handlers.handle_revert,
}

# Attempts for a command whose aggregate another writer changed between load and save.
MAX_ATTEMPTS = 25


class CommandBus:
    def __init__(
        self,
        store: EventStore,
        wait_for_position: Callable[[str, int], bool],
        handlers_by_command: dict[type[Any], Handler] | None = None,
    ) -> None:
        self.store = store
        self.wait_for_position = wait_for_position
        self.handlers = handlers_by_command or HANDLERS

    def handle(self, command: Command) -> tuple[Outcome, bool]:
        """Run the command; returns its outcome and whether the read models reflect it."""
        handler = self.handlers[type(command)]
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                outcome = handler(command, self.store)
                break
            except IntegrityError:
                # Someone saved one of its aggregates after we loaded it: run it again on
                # fresh state. With If-Match that run answers 412 if the resource itself
                # moved on; a conflict elsewhere (a unique key, a children list, a
                # turnstile) is no reason to call the client's version stale.
                if attempt == MAX_ATTEMPTS:
                    raise Conflict(
                        "the resource is being changed by other requests; retry"
                    ) from None
                # Exponential backoff with full jitter, capped at 50 ms.
                time.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))  # noqa: S311
        visible = True
        if outcome.position is not None:
            visible = self.wait_for_position(command.actor.tenant_id, outcome.position)
        return outcome, visible
