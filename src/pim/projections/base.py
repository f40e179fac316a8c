"""What a projection is: a named read model with one handler per event type, applied in the
same transaction as its tracking position, so a view never skips or repeats an event."""

from __future__ import annotations

import copy
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import msgspec
from psycopg import sql

from pim.projections.statements import Statements

EventHandler = Callable[[Any, Statements, Any, int], None]

_encode_json = msgspec.json.Encoder().encode

# A NUL escape not itself escaped (an even run of backslashes before it, or none).
_NUL_ESCAPE = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def without_nul(state: bytes) -> bytes:
    """A stored event's JSON with every U+0000 shown as U+FFFD, for the read models only.

    PostgreSQL text and jsonb cannot hold U+0000. The API refuses it, but an event written
    before it did (or by another writer) must not stop a projection for every tenant; the
    log keeps the event as it was. JSON can only spell NUL as this escape."""
    if b"\\u0000" not in state:
        return state
    return _NUL_ESCAPE.sub(rb"\1\\ufffd", state)


def rendered(query: sql.Composable, conn: Any, cache: dict[int, bytes]) -> bytes:
    """``query`` as the bytes psycopg sends, composed once per ``cache``: composing (quoting
    identifiers) at every execution was a tenth of a catch-up's time."""
    found = cache.get(id(query))
    if found is None:
        found = cache[id(query)] = query.as_bytes(conn)
    return found


@dataclass(frozen=True)
class RowsStatement:
    """A statement over many rows at once. Its one ``%s`` receives the rows as a JSON array
    of objects; write it as ``jsonb_to_recordset(%s::jsonb) AS r(name type, ...)``.
    ``key`` names the fields that identify a row's target: a run that holds one key twice is
    split in two statements, because an UPDATE ... FROM applies only one of two matches."""

    query: sql.Composed | sql.SQL
    key: tuple[str, ...] = ()
    _bytes: dict[int, bytes] = field(default_factory=dict, compare=False, repr=False)

    def execute(self, cur: Statements, rows: list[dict[str, Any]]) -> None:
        if rows:
            query = rendered(self.query, cur.conn, self._bytes)
            cur.execute(query, (_encode_json(rows).decode(),))


def update_by_id(
    table: str, assignments: list[sql.Composable], columns: dict[str, str]
) -> RowsStatement:
    """``UPDATE table AS t SET <assignments>`` from rows of ``tenant_id``, ``id`` and
    ``columns`` (name -> SQL type, read as ``r.name``), each row matching its (tenant, id)."""
    return RowsStatement(
        sql.SQL(
            "UPDATE {table} AS t SET {assignments} FROM jsonb_to_recordset(%s::jsonb)"
            " AS r(tenant_id uuid, id uuid{types}) WHERE t.tenant_id = r.tenant_id AND t.id = r.id"
        ).format(
            table=sql.Identifier(table),
            assignments=sql.SQL(", ").join(assignments),
            types=sql.SQL("").join(
                sql.SQL(", {} {}").format(sql.Identifier(name), sql.SQL(kind))
                for name, kind in columns.items()
            ),
        ),
        key=("tenant_id", "id"),
    )


class Projection(ABC):
    """A read model. ``handlers`` maps event classes to methods ``(self, cur, event, position)``.

    Tables are named with ``table_suffix`` so a rebuild can fill fresh tables beside the live
    ones and switch over (blue/green)."""

    name: ClassVar[str]
    handlers: ClassVar[dict[type[Any], EventHandler]]

    def __init__(self, table_suffix: str = "") -> None:
        self.table_suffix = table_suffix
        self._topics: set[str] | None = None
        self._inserts: list[tuple[RowsStatement, dict[str, Any]]] = []
        self._statements: dict[Any, RowsStatement] = {}

    # -- write-behind statements ----------------------------------------------------------
    # Writes whose results nobody reads are queued in event order and sent at the end of the
    # batch (or before anything that reads). Each run of rows for the same statement goes to
    # PostgreSQL as ONE statement whose parameter is a JSON array of the rows (unpacked there
    # by jsonb_to_recordset): a batch of a thousand events costs a few statements, not a
    # thousand (per-row executemany was most of a bulk job's projection time).

    def statement(self, key: Any, build: Callable[[], RowsStatement]) -> RowsStatement:
        """A statement built once per projection instance (table names are fixed)."""
        found = self._statements.get(key)
        if found is None:
            found = self._statements[key] = build()
        return found

    def defer(self, statement: RowsStatement, row: dict[str, Any]) -> None:
        self._inserts.append((statement, row))

    def write_inserts(self, cur: Statements) -> None:
        pending, self._inserts = self._inserts, []
        run: list[dict[str, Any]] = []
        keys: set[tuple[Any, ...]] = set()
        current: RowsStatement | None = None
        for statement, row in pending:
            key = tuple(row[name] for name in statement.key) if statement.key else None
            if statement is not current or (key is not None and key in keys):
                if current is not None:
                    current.execute(cur, run)
                current, run = statement, []
                keys.clear()
            run.append(row)
            if key is not None:
                keys.add(key)
        if current is not None:
            current.execute(cur, run)

    def clone(self) -> Self:
        """The same projection with its own batch state, for another thread: a projector
        catches several tenants up at once, and a batch's deferred rows are per instance."""
        twin = copy.copy(self)
        twin._inserts = []
        twin.begin()
        return twin

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

    def flush(self, cur: Statements) -> None:  # noqa: B027 - optional hook
        """A batch ends (same transaction): write what was deferred, set-based."""

    def apply(self, cur: Statements, event: Any, position: int) -> None:
        handler = self.handlers.get(type(event))
        if handler is not None:
            handler(self, cur, event, position)
