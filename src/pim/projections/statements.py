"""The statements of one projection batch, sent in as few round trips as possible.

Profiling a catch-up (one API write's events) showed most of its time in the driver's
per-statement work: a batch makes ten-odd small statements, and each cost a send, a wait and
a result, whatever it did. Here writes are queued and go out as one message of many
statements, ahead of the next read or at the end of the batch: a catch-up is two round trips
(BEGIN, its lock and its read; then every write, the new positions and COMMIT).

A statement with parameters is prepared once per connection (``PREPARE``, sent in the same
message as its first use) and run with ``EXECUTE``, its parameters bound as literals on the
client (psycopg's client-side binding, the quoting of ``ClientCursor``): PostgreSQL plans it
once, as it would a protocol-level prepared statement. Each statement still runs on its own,
in order, in the batch's transaction."""

from __future__ import annotations

import contextlib
import hashlib
import re
import weakref
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import TransactionStatus

Query = str | bytes | sql.SQL | sql.Composed

_PLACEHOLDER = re.compile(rb"%%|%s")
# connection -> names of the statements prepared on it
_PREPARED: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


def _numbered(query: bytes) -> tuple[bytes, int]:
    """``%s`` placeholders numbered ($1, $2, ...) for PREPARE, ``%%`` unescaped; the count."""
    count = 0

    def number(match: re.Match[bytes]) -> bytes:
        nonlocal count
        if match.group(0) == b"%%":
            return b"%"
        count += 1
        return b"$%d" % count

    return _PLACEHOLDER.sub(number, query), count


class Statements:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self._binder = psycopg.ClientCursor(conn)
        self._pending: list[bytes] = []
        self._prepared = _PREPARED.setdefault(conn, set())

    def execute(self, query: Query, params: Any = None) -> None:
        """Queue a statement whose result nobody reads."""
        self._pending.append(self._statement(query, params))

    def read(self, query: Query, params: Any = None) -> list[tuple[Any, ...]]:
        """Send what is queued and this query; its rows (the queued writes ran first)."""
        self._pending.append(self._statement(query, params))
        return self._send()

    def flush(self) -> None:
        """Send what is queued."""
        if self._pending:
            self._send()

    def abandon(self) -> None:
        """After a failure: drop what is queued, roll back the transaction if one is open,
        and learn again what this connection has prepared (a message that failed midway ran
        some of its PREPAREs and not the others; prepared statements outlive a rollback)."""
        self._pending = []
        with contextlib.suppress(Exception):  # the first error is the one to see
            if self.conn.info.transaction_status not in (
                TransactionStatus.IDLE,
                TransactionStatus.UNKNOWN,
            ):
                self.conn.execute("ROLLBACK")
            names = self.conn.execute(
                "SELECT name FROM pg_prepared_statements WHERE name LIKE 'pim\\_%'"
            ).fetchall()
            self._prepared.clear()
            self._prepared.update(str(r[0]) for r in names)

    def _statement(self, query: Query, params: Any) -> bytes:
        text = query.as_bytes(self.conn) if isinstance(query, sql.Composable) else query
        text = text.encode() if isinstance(text, str) else text
        if params is None:
            return text
        name = "pim_" + hashlib.sha1(text, usedforsecurity=False).hexdigest()[:20]
        args = self._binder.mogrify(
            "(" + ", ".join(["%s"] * len(params)) + ")", tuple(params)
        ).encode()
        execute = b"EXECUTE " + name.encode() + args
        if name in self._prepared:
            return execute
        self._prepared.add(name)
        numbered, _ = _numbered(text)
        return b"PREPARE " + name.encode() + b" AS " + numbered + b";\n" + execute

    def _send(self) -> list[tuple[Any, ...]]:
        message = b";\n".join(self._pending)
        self._pending = []
        rows: list[tuple[Any, ...]] = []
        with self.conn.cursor() as cur:
            cur.execute(message)
            while True:  # the rows of the last statement that returns any
                if cur.description is not None:
                    rows = cur.fetchall()
                if not cur.nextset():
                    break
        return rows
