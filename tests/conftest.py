"""Test infrastructure: real PostgreSQL and Redis (URLs if given, embedded servers otherwise),
and a real `pim serve` process driven over HTTP."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from pim.auth.tokens import mint_token

ROOT = Path(__file__).resolve().parents[1]
PIM = str(Path(sys.executable).with_name("pim"))
JWT_SECRET = "test-secret-" + secrets.token_hex(16)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("PIM_TEST_DATABASE_URL")
    if url:
        yield url
        return
    from pim.infra.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg"))
    server.ensure_running(adopt=False)
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("PIM_TEST_REDIS_URL")
    if url:
        yield url
        return
    from pim.infra.embedded import EmbeddedRedis

    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.ensure_running(adopt=False)
    yield server.url
    server.stop()


def _with_dbname(server_url: str, dbname: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(server_url)
    params["dbname"] = dbname
    return make_conninfo(**params)


@pytest.fixture(scope="session")
def make_database(postgres_server_url: str) -> Iterator[Any]:
    """Creates fresh databases on the test server; drops them at the end of the session."""
    created: list[str] = []

    def make() -> str:
        name = f"pim_test_{secrets.token_hex(6)}"
        with psycopg.connect(postgres_server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return _with_dbname(postgres_server_url, name)

    yield make
    with psycopg.connect(postgres_server_url, autocommit=True) as conn:
        for name in created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Service:
    """A running `pim` process."""

    base_url: str
    database_url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def append_raw_event(
    database_url: str, originator_id: str, version: int, topic: str, state: dict[str, Any]
) -> None:
    """Write an event straight into the catalog log as an older release stored it (under
    the events-table lock, which also excludes the per-tenant appends of this one) and wake
    the projection runners."""
    with psycopg.connect(database_url) as conn:
        conn.execute("LOCK TABLE catalog_events IN EXCLUSIVE MODE")
        conn.execute(
            "INSERT INTO catalog_events (originator_id, originator_version, topic, state)"
            " VALUES (%s, %s, %s, %s)",
            (originator_id, version, topic, json.dumps(state).encode()),
        )
        conn.execute("NOTIFY catalog_events")
        conn.commit()


def append_raw_product(
    database_url: str,
    tenant: Tenant,
    fields: dict[str, Any],
    *,
    timestamp: str = "2026-01-02T03:04:05+00:00",
    actor: str = "importer",
    class_version: int | None = 2,
) -> str:
    """A Product.Created written straight into the log (as an older release or another writer
    would have stored it: ``class_version`` None is the first shape); returns its id."""
    product_id = str(uuid.uuid4())
    state: dict[str, Any] = {
        "timestamp": {"_type_": "datetime_iso", "_data_": timestamp},
        "tenant_id": tenant.tenant_id,
        "org_id": tenant.org_id,
        "actor": actor,
        "actor_email": None,
        "request_id": f"raw-{product_id}",
        "originator_topic": "pim.domain.product:Product",
        "fields": fields,
    }
    if class_version is not None:
        state["class_version"] = class_version
    append_raw_event(
        database_url,
        f"{tenant.tenant_id}:{product_id}",
        1,
        "pim.domain.product:Product.Created",
        state,
    )
    return product_id


def own_service_env(database_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a service started by one test, on a database of its own."""
    return {
        "PIM_DATABASE_URL": database_url,
        "PIM_REDIS_URL": redis_url,
        "PIM_JWT_SECRET": JWT_SECRET,
        "PIM_DATA_DIR": str(tmp_path / "data"),
        "PIM_LOG_LEVEL": "warning",
        "PIM_SWEEP_INTERVAL": "1",
    }


def start_service(
    env: dict[str, str],
    log_path: Path,
    *,
    command: str = "serve",
    args: tuple[str, ...] = (),
    timeout: float = 60.0,
) -> Service:
    port = free_port()
    env = {**os.environ, **env, "PIM_HOST": "127.0.0.1", "PIM_PORT": str(port)}
    log_file = log_path.open("ab")
    process = subprocess.Popen(
        [PIM, command, *args], env=env, stdout=log_file, stderr=log_file, cwd=ROOT
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pim {command} exited early:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return Service(base_url, env.get("PIM_DATABASE_URL", ""), env, process, log_path)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"pim {command} did not become healthy:\n{log_path.read_text()}")


@pytest.fixture(scope="session")
def service_env(
    make_database: Any, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    return {
        "PIM_DATABASE_URL": make_database(),
        "PIM_REDIS_URL": redis_url,
        "PIM_JWT_SECRET": JWT_SECRET,
        "PIM_DATA_DIR": str(tmp_path_factory.mktemp("data")),
        "PIM_LOG_LEVEL": "warning",
        "PIM_WEBHOOK_ALLOW_PRIVATE": "true",
        # Access logging on, so the "tokens never appear in logs" test has lines to search.
        "PIM_ACCESS_LOG": "1",
    }


@pytest.fixture(scope="session")
def service(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    svc = start_service(service_env, tmp_path_factory.mktemp("logs") / "serve.log")
    yield svc
    svc.stop()
    assert "Traceback" not in svc.log(), svc.log()


@dataclass
class Tenant:
    """A tenant with one organisation, and an HTTP client speaking for it."""

    base_url: str
    tenant_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    org_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    subject: str = field(default_factory=lambda: f"user-{secrets.token_hex(4)}")
    email: str | None = "merchant@example.com"
    scopes: tuple[str, ...] = ("pim:read", "pim:write")

    def token(self, **overrides: Any) -> str:
        args: dict[str, Any] = {
            "tenant_id": self.tenant_id,
            "org_ids": [self.org_id],
            "scopes": list(self.scopes),
            "subject": self.subject,
            "email": self.email,
        }
        args.update(overrides)
        return mint_token(JWT_SECRET, **args)

    def headers(self, token: str | None = None, **extra: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token or self.token()}",
            "X-Tenant-ID": self.tenant_id,
            "X-Org-ID": self.org_id,
            **extra,
        }

    def request(
        self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        url = path if path.startswith("http") else f"{self.base_url}/api/v1/pim{path}"
        return httpx.request(
            method, url, headers={**self.headers(), **(headers or {})}, timeout=30, **kwargs
        )

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def create(self, path: str, **fields: Any) -> dict[str, Any]:
        response = self.post(path, json=fields)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def category(self, slug: str, **fields: Any) -> dict[str, Any]:
        return self.create("/categories", name=slug.replace("-", " ").title(), slug=slug, **fields)

    def attribute(self, key: str, type: str = "TEXT", **fields: Any) -> dict[str, Any]:
        return self.create("/attributes", name=key.title(), key=key, type=type, **fields)

    def create_product(self, **fields: Any) -> dict[str, Any]:
        body = {"title": "Trail shoe", **fields}
        response = self.post("/products", json=body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created


@pytest.fixture
def tenant(service: Service) -> Tenant:
    return Tenant(service.base_url)


@pytest.fixture
def other_tenant(service: Service) -> Tenant:
    return Tenant(service.base_url)


def assert_problem(
    response: httpx.Response, status: int, field: str | None = None
) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status (naming ``field`` if given)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"] and body["type"] and body["detail"]
    assert body["error"] == body["detail"]
    if field is not None:
        fields = [e["field"] for e in body.get("errors", [])]
        assert field in fields, body
    return body
