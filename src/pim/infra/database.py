"""PostgreSQL plumbing: connection settings, the schema of our own tables, and migrations."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from eventsourcing import persistence as es_persistence
from psycopg.conninfo import conninfo_to_dict

# Serialises schema creation when several processes start at once.
MIGRATION_LOCK_KEY = 7_201_501
# Seconds a request waits for a pooled connection, or for a new one to connect, before it
# answers 503 (PostgreSQL is down or saturated).
POOL_TIMEOUT_S = 2


# What PostgreSQL being down, restarting or unreachable raises (through psycopg directly or
# through eventsourcing's recorders): an outage, answered 503 and retried, not a bug.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    es_persistence.OperationalError,
    es_persistence.InterfaceError,
)


def log_failure(logger: logging.Logger, what: str, exc: BaseException) -> None:
    """Log a failed attempt that will be retried: one line for an outage (the database is
    down; a traceback per retry says nothing more), a traceback for anything else."""
    if isinstance(exc, UNAVAILABLE_ERRORS):
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        logger.warning("%s: database unavailable (%s)", what, reason)
    else:
        logger.error("%s", what, exc_info=exc)


def advisory_lock_key(name: str) -> int:
    """A PostgreSQL advisory lock key for a name, the same in every process (Python's
    hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def eventsourcing_env(database_url: str, *, max_connections: int = 12) -> dict[str, str]:
    """The eventsourcing Postgres settings for a database URL: a pool that keeps one
    connection open and grows to ``max_connections`` under load (a process that hardly
    writes, such as a projection runner, holds one)."""
    info = conninfo_to_dict(database_url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(info.get("dbname") or "postgres"),
        "POSTGRES_HOST": str(info.get("host") or "127.0.0.1"),
        "POSTGRES_PORT": str(info.get("port") or "5432"),
        "POSTGRES_USER": str(info.get("user") or "postgres"),
        "POSTGRES_PASSWORD": str(info.get("password") or ""),
        "ORIGINATOR_ID_TYPE": "text",
        # The default (0) waits forever on the events-table lock.
        "POSTGRES_LOCK_TIMEOUT": "5",
        # How long a save waits for a pool connection (or a new one): an outage answers
        # 503 within seconds instead of hanging (the default is 30 s).
        "POSTGRES_CONNECT_TIMEOUT": str(POOL_TIMEOUT_S),
        "POSTGRES_POOL_SIZE": "1",
        "POSTGRES_MAX_OVERFLOW": str(max(0, max_connections - 1)),
        # No pre-ping: it costs a round trip per connection checkout (measured ~25% of write
        # time); broken connections surface as errors that the callers retry.
        "POSTGRES_PRE_PING": "n",
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "30",
    }


def connection_kwargs(*, statement_timeout_s: int | None = None) -> dict[str, Any]:
    """Every session speaks UTC (timestamps leave the database as RFC 3339 UTC) and gives up
    connecting after POOL_TIMEOUT_S; ``statement_timeout_s`` bounds every statement."""
    options = "-c timezone=UTC"
    if statement_timeout_s is not None:
        options += f" -c statement_timeout={statement_timeout_s * 1000}"
    return {"options": options, "autocommit": True, "connect_timeout": POOL_TIMEOUT_S}


@contextmanager
def migration_lock(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """Hold the schema lock, so processes starting together do not race on CREATE."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            yield conn
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


def run_ddl(conn: psycopg.Connection[Any], statements: Iterable[str]) -> None:
    for statement in statements:
        conn.execute(statement.encode())
