"""What a projection is: a named read model with one handler per event type, applied in the
same transaction as its tracking position, so a view never skips or repeats an event."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

from psycopg import Cursor, sql

EventHandler = Callable[[Any, Cursor[Any], Any, int], None]


class Projection(ABC):
    """A read model. ``handlers`` maps event classes to methods ``(self, cur, event, position)``.

    Tables are named with ``table_suffix`` so a rebuild can fill fresh tables beside the live
    ones and switch over (blue/green)."""

    name: ClassVar[str]
    handlers: ClassVar[dict[type[Any], EventHandler]]

    def __init__(self, table_suffix: str = "") -> None:
        self.table_suffix = table_suffix
        self._topics: set[str] | None = None
        self._inserts: list[tuple[sql.Composed, tuple[Any, ...]]] = []
        self._statements: dict[Any, sql.Composed] = {}

    # -- write-behind statements --------------------------------------------------------------
    # Writes whose results nobody reads are queued in event order and sent at the end of the
    # batch (or before anything that reads), each run of the same statement as ONE
    # executemany instead of one round of communication per row.

    def statement(self, key: Any, build: Callable[[], sql.Composed]) -> sql.Composed:
        """A statement built once per projection instance (table names are fixed)."""
        found = self._statements.get(key)
        if found is None:
            found = self._statements[key] = build()
        return found

    def defer_insert(self, statement: sql.Composed, row: tuple[Any, ...]) -> None:
        self._inserts.append((statement, row))

    def write_inserts(self, cur: Cursor[Any]) -> None:
        pending, self._inserts = self._inserts, []
        run: list[tuple[Any, ...]] = []
        current: sql.Composed | None = None
        for statement, row in pending:
            if statement is not current:
                if current is not None:
                    cur.executemany(current, run)
                current, run = statement, []
            run.append(row)
        if current is not None:
            cur.executemany(current, run)

    def table(self, base: str) -> str:
        return f"{base}{self.table_suffix}"

    @property
    def tracking_name(self) -> str:
        """Name of this projection's tracking row (a rebuild tracks its fresh tables apart)."""
        return f"{self.name}{self.table_suffix}"

    def tables(self) -> list[str]:
        """The tables this projection owns (for rebuild and verify)."""
        return [self.table(base) for base in self.table_bases]

    table_bases: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def ddl(self) -> list[str]:
        """Idempotent CREATE statements for this projection's tables."""

    def topics(self) -> set[str]:
        """The event topics this projection handles; others only advance its position."""
        if self._topics is None:
            from eventsourcing.utils import get_topic

            self._topics = {get_topic(cls) for cls in self.handlers}
        return self._topics

    def begin(self) -> None:  # noqa: B027 - optional hook
        """A batch starts: forget anything deferred by a batch that did not commit."""

    def flush(self, cur: Cursor[Any]) -> None:  # noqa: B027 - optional hook
        """A batch ends (same transaction): write what was deferred, set-based."""

    def apply(self, cur: Cursor[Any], event: Any, position: int) -> None:
        handler = self.handlers.get(type(event))
        if handler is not None:
            handler(self, cur, event, position)
