"""Webhooks: target checks, delivery recording, signed delivery with retries, and the HTTP API."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, get_args

import dramatiq
import httpx
import msgspec
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from pim.api.webhooks import EventType
from pim.infra.schema import WEBHOOKS_DDL
from pim.webhooks import store, targets
from pim.webhooks.delivery import MAX_ATTEMPTS, USER_AGENT, DeliveryFailed, deliver
from pim.webhooks.store import EVENT_TYPES, record_event
from pim.webhooks.targets import UnsafeTarget, check_target
from tests.conftest import Service, Tenant, assert_problem

# Flipped by the lead once WebhookController is mounted under /api/v1/pim.
API_MOUNTED = True
# Flipped once job completion records export.completed / bulk_job.* events.
EVENTS_WIRED = True

needs_api = pytest.mark.skipif(not API_MOUNTED, reason="WebhookController not mounted yet")
needs_events = pytest.mark.skipif(
    not (API_MOUNTED and EVENTS_WIRED), reason="job events not wired to webhooks yet"
)


# --- infrastructure ------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: Message
    body: bytes


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST and answers ``status``."""

    status: int = 200
    statuses: list[int] = field(default_factory=list)  # answered first, one per request
    delay_s: float = 0.0
    location: str | None = None
    requests: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.server_address[1])

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.requests


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state.requests.append(Received(self.path, self.headers, body))
            if state.delay_s:
                time.sleep(state.delay_s)
            self.send_response(state.statuses.pop(0) if state.statuses else state.status)
            if state.location:
                self.send_header("Location", state.location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.server = server
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def db_url(make_database: Any) -> str:
    url: str = make_database()
    with psycopg.connect(url, autocommit=True) as conn:
        for ddl in WEBHOOKS_DDL:
            conn.execute(ddl)
        for ddl in WEBHOOKS_DDL:  # idempotent
            conn.execute(ddl)
    return url


def add_webhook(
    db_url: str, tenant_id: str, url: str, events: list[str], secret: str = "s" * 32
) -> str:
    hook_id = str(uuid.uuid4())
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO webhooks (tenant_id, id, url, events, secret, created_by)"
            " VALUES (%s, %s, %s, %s, %s, 'tester')",
            (tenant_id, hook_id, url, events, secret),
        )
    return hook_id


def record(db_url: str, tenant_id: str, event_type: str, data: dict[str, Any]) -> list[str]:
    with psycopg.connect(db_url) as conn:  # one transaction, committed on exit
        return record_event(conn, tenant_id, event_type, data)


def delivery_row(db_url: str, delivery_id: str) -> dict[str, Any]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        cur = conn.execute(
            "SELECT tenant_id, webhook_id, event_id, event_type, payload, status, attempts,"
            " last_status_code, last_error, delivered_at"
            " FROM webhook_deliveries WHERE id = %s",
            (delivery_id,),
        )
        row = cur.fetchone()
        assert row is not None and cur.description is not None
        return {d.name: v for d, v in zip(cur.description, row, strict=True)}


def one_delivery(db_url: str, url: str, *, secret: str = "s" * 32) -> tuple[str, str, str]:
    """A fresh tenant with one webhook at ``url`` and one PENDING delivery for it."""
    tenant_id = str(uuid.uuid4())
    hook_id = add_webhook(db_url, tenant_id, url, ["export.completed"], secret)
    (delivery_id,) = record(db_url, tenant_id, "export.completed", {"job_id": "j-1"})
    return tenant_id, hook_id, delivery_id


def verify(secret: str, received: Received) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), received.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, received.headers["X-PIM-Signature"] or "")


# --- targets -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8080/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://172.16.5.4/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[fe80::1]/hook",
        "http://0.0.0.0/hook",
        "http://100.64.0.1/hook",
        "http://224.0.0.1/hook",
        "http://2130706433/hook",  # 127.0.0.1 as one number
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "http:///no-host",
        "http://example.com:99999/",
        "not a url",
        "",
    ],
)
def test_check_target_refuses_unsafe_urls(url: str) -> None:
    with pytest.raises(UnsafeTarget) as caught:
        check_target(url, allow_private=False)
    assert isinstance(caught.value, ValueError)
    assert str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/hook",
        "http://localhost/hook",
        "http://10.0.0.1/hook",
        "http://169.254.1.1/hook",
        "https://[::1]:8443/hook",
    ],
)
def test_check_target_allows_private_addresses_when_allowed(url: str) -> None:
    check_target(url, allow_private=True)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "http:///x", "gopher://localhost/"])
def test_check_target_refuses_bad_urls_even_when_private_allowed(url: str) -> None:
    with pytest.raises(UnsafeTarget):
        check_target(url, allow_private=True)


def test_check_target_names_the_reason() -> None:
    with pytest.raises(UnsafeTarget, match="loopback"):
        check_target("http://127.0.0.1/", allow_private=False)
    with pytest.raises(UnsafeTarget, match="http or https"):
        check_target("ftp://example.com/", allow_private=False)


def _fake_dns(answers: dict[str, list[str]]) -> Any:
    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in answers:
            return real(host, port, *args, **kwargs)
        return [
            (
                socket.AF_INET6 if ":" in ip else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (ip, port),
            )
            for ip in answers[host]
        ]

    return getaddrinfo


def test_check_target_resolves_names_and_refuses_any_private_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        _fake_dns(
            {
                "hooks.example.com": ["93.184.216.34", "2606:2800:220:1::1"],
                "sneaky.example.com": ["93.184.216.34", "10.0.0.7"],
            }
        ),
    )
    check_target("https://hooks.example.com/pim", allow_private=False)
    assert targets.resolve_target("https://hooks.example.com/pim", allow_private=False) == [
        "93.184.216.34",
        "2606:2800:220:1::1",
    ]
    with pytest.raises(UnsafeTarget, match=r"10\.0\.0\.7"):
        check_target("https://sneaky.example.com/pim", allow_private=False)
    check_target("http://93.184.216.34/literal", allow_private=False)


def test_unresolvable_host_is_refused() -> None:
    with pytest.raises(UnsafeTarget, match="does not resolve"):
        check_target("https://no-such-host.invalid/hook", allow_private=False)


def test_refusal_covers_every_special_range() -> None:
    for ip in ("127.0.0.2", "::", "fc00::1", "ff02::1", "240.0.0.1", "::ffff:10.0.0.1"):
        assert targets.refusal(ipaddress.ip_address(ip)) is not None, ip
    assert targets.refusal(ipaddress.ip_address("8.8.8.8")) is None


# --- recording events ----------------------------------------------------------------------


def test_record_event_creates_one_delivery_per_subscribed_webhook_of_the_tenant(
    db_url: str,
) -> None:
    tenant, other = str(uuid.uuid4()), str(uuid.uuid4())
    exports = add_webhook(db_url, tenant, "http://a.example/1", ["export.completed"])
    both = add_webhook(
        db_url, tenant, "http://a.example/2", ["bulk_job.completed", "export.completed"]
    )
    add_webhook(db_url, tenant, "http://a.example/3", ["bulk_job.failed"])
    foreign = add_webhook(db_url, other, "http://b.example/1", ["export.completed"])

    data = {"job_id": str(uuid.uuid4()), "type": "EXPORT", "status": "COMPLETED", "total": 3}
    ids = record(db_url, tenant, "export.completed", data)
    assert len(ids) == 2

    rows = [delivery_row(db_url, i) for i in ids]
    assert {str(r["webhook_id"]) for r in rows} == {exports, both}
    assert foreign not in {str(r["webhook_id"]) for r in rows}
    assert {str(r["tenant_id"]) for r in rows} == {tenant}
    for row in rows:
        assert row["status"] == "PENDING" and row["attempts"] == 0
        assert row["event_type"] == "export.completed"
        assert row["last_status_code"] is None and row["delivered_at"] is None
    # the body is encoded once: every subscriber gets the same bytes and event id
    assert rows[0]["payload"] == rows[1]["payload"]
    assert rows[0]["event_id"] == rows[1]["event_id"]

    envelope = msgspec.json.decode(rows[0]["payload"])
    assert set(envelope) == {"id", "type", "created_at", "data"}
    assert envelope["id"] == str(rows[0]["event_id"])
    assert envelope["type"] == "export.completed"
    assert envelope["data"] == data
    assert envelope["created_at"].endswith("Z")
    assert datetime.fromisoformat(envelope["created_at"].replace("Z", "+00:00"))

    assert record(db_url, tenant, "bulk_job.failed", {"job_id": "x"}) != []
    assert record(db_url, str(uuid.uuid4()), "export.completed", {"job_id": "x"}) == []


def test_record_event_is_part_of_the_callers_transaction(db_url: str) -> None:
    tenant = str(uuid.uuid4())
    hook = add_webhook(db_url, tenant, "http://a.example/1", ["bulk_job.completed"])
    with psycopg.connect(db_url) as conn:
        ids = record_event(conn, tenant, "bulk_job.completed", {"job_id": "j"})
        assert len(ids) == 1
        conn.rollback()
    with psycopg.connect(db_url, autocommit=True) as conn:
        count = conn.execute(
            "SELECT count(*) FROM webhook_deliveries WHERE tenant_id = %s AND webhook_id = %s",
            (tenant, hook),
        ).fetchone()
    assert count == (0,)


def test_stale_deliveries_leave_retry_schedules_alone(db_url: str) -> None:
    tenant = str(uuid.uuid4())
    add_webhook(db_url, tenant, "http://a.example/1", ["export.completed"])
    fresh, unsent, retrying, abandoned, done = (
        record(db_url, tenant, "export.completed", {"n": n})[0] for n in range(5)
    )
    with psycopg.connect(db_url, autocommit=True) as conn:
        age = "UPDATE webhook_deliveries SET updated_at = now() - make_interval(secs => %s),"
        conn.execute(age + " attempts = 0 WHERE id = %s", (60, unsent))
        conn.execute(age + " attempts = 5 WHERE id = %s", (300, retrying))
        conn.execute(age + " attempts = 9 WHERE id = %s", (store.ABANDONED_AFTER_S + 5, abandoned))
        conn.execute(
            age + " attempts = 1, status = 'DELIVERED' WHERE id = %s",
            (store.ABANDONED_AFTER_S * 2, done),
        )
        stale = set(store.stale_deliveries(conn))
    assert {unsent, abandoned} <= stale
    assert not {fresh, retrying, done} & stale


def test_api_event_types_match_the_store() -> None:
    assert set(get_args(EventType)) == set(EVENT_TYPES)


# --- delivering ----------------------------------------------------------------------------


def test_deliver_posts_the_signed_raw_body_and_marks_it_delivered(
    db_url: str, receiver: Receiver
) -> None:
    secret = "my-webhook-secret-0123456789"
    _, _, delivery_id = one_delivery(db_url, receiver.url, secret=secret)
    stored = delivery_row(db_url, delivery_id)

    deliver(db_url, delivery_id, allow_private=True)

    (received,) = receiver.requests
    assert received.path == "/hook"
    assert received.body == stored["payload"]
    assert received.headers["Content-Type"] == "application/json"
    assert received.headers["X-PIM-Event"] == "export.completed"
    assert received.headers["X-PIM-Delivery"] == delivery_id
    assert received.headers["User-Agent"] == USER_AGENT
    assert received.headers["X-PIM-Signature"].startswith("sha256=")
    assert verify(secret, received)
    assert not verify("another-secret-entirely", received)
    assert msgspec.json.decode(received.body)["data"] == {"job_id": "j-1"}

    row = delivery_row(db_url, delivery_id)
    assert row["status"] == "DELIVERED"
    assert row["attempts"] == 1
    assert row["last_status_code"] == 200
    assert row["delivered_at"] is not None

    deliver(db_url, delivery_id, allow_private=True)  # at-least-once: a redelivery is a no-op
    assert len(receiver.requests) == 1
    assert delivery_row(db_url, delivery_id)["attempts"] == 1


def test_a_failed_attempt_raises_for_a_retry_and_stays_pending(
    db_url: str, receiver: Receiver
) -> None:
    receiver.status = 500
    _, _, delivery_id = one_delivery(db_url, receiver.url)

    with pytest.raises(DeliveryFailed) as caught:
        deliver(db_url, delivery_id, allow_private=True)
    assert isinstance(caught.value, dramatiq.Retry)  # retried by dramatiq, no traceback logged
    assert caught.value.delay is None  # the actor's exponential backoff applies
    row = delivery_row(db_url, delivery_id)
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("PENDING", 1, 500)
    assert row["last_error"] == "HTTP 500"

    receiver.status = 204
    deliver(db_url, delivery_id, allow_private=True)
    row = delivery_row(db_url, delivery_id)
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("DELIVERED", 2, 204)
    assert row["last_error"] is None
    assert len(receiver.requests) == 2
    assert receiver.requests[0].body == receiver.requests[1].body


def test_dramatiq_retries_a_failed_delivery_until_it_succeeds(
    db_url: str, receiver: Receiver
) -> None:
    """DeliveryFailed is a dramatiq Retry: the actor's backoff applies and nothing is lost."""
    from dramatiq.brokers.stub import StubBroker

    receiver.statuses = [500, 502]
    _, _, delivery_id = one_delivery(db_url, receiver.url)
    broker = StubBroker()
    broker.emit_after("process_boot")
    actor: Any = dramatiq.actor(
        actor_name="deliver_webhook_test",
        queue_name="webhooks-test",
        broker=broker,
        max_retries=5,
        min_backoff=10,
        max_backoff=50,
    )(lambda did: deliver(db_url, did, allow_private=True))
    worker = dramatiq.Worker(broker, worker_timeout=50)
    worker.start()
    try:
        actor.send(delivery_id)
        broker.join(actor.queue_name, timeout=20_000)
        worker.join()
    finally:
        worker.stop()
        broker.close()
    assert len(receiver.requests) == 3
    row = delivery_row(db_url, delivery_id)
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("DELIVERED", 3, 200)


def test_the_last_attempt_marks_the_delivery_failed_without_raising(
    db_url: str, receiver: Receiver
) -> None:
    assert MAX_ATTEMPTS == 13
    receiver.status = 503
    _, _, delivery_id = one_delivery(db_url, receiver.url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE webhook_deliveries SET attempts = %s WHERE id = %s",
            (MAX_ATTEMPTS - 1, delivery_id),
        )

    deliver(db_url, delivery_id, allow_private=True)

    row = delivery_row(db_url, delivery_id)
    assert (row["status"], row["attempts"], row["last_status_code"]) == (
        "FAILED",
        MAX_ATTEMPTS,
        503,
    )
    deliver(db_url, delivery_id, allow_private=True)  # given up on: not attempted again
    assert len(receiver.requests) == 1


def test_a_deleted_webhook_gets_no_request(db_url: str, receiver: Receiver) -> None:
    tenant_id, hook_id, delivery_id = one_delivery(db_url, receiver.url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DELETE FROM webhooks WHERE tenant_id = %s AND id = %s", (tenant_id, hook_id))

    deliver(db_url, delivery_id, allow_private=True)
    assert receiver.requests == []
    deliver(db_url, str(uuid.uuid4()), allow_private=True)  # unknown delivery: nothing to do
    deliver(db_url, "not-a-uuid", allow_private=True)
    assert receiver.requests == []


def test_redirects_are_not_followed(db_url: str, receiver: Receiver) -> None:
    receiver.status = 307
    receiver.location = receiver.url + "/elsewhere"
    _, _, delivery_id = one_delivery(db_url, receiver.url)

    with pytest.raises(DeliveryFailed):
        deliver(db_url, delivery_id, allow_private=True)
    assert len(receiver.requests) == 1
    row = delivery_row(db_url, delivery_id)
    assert row["last_status_code"] == 307 and "redirect" in row["last_error"]


def test_timeouts_count_as_failed_attempts(db_url: str, receiver: Receiver) -> None:
    receiver.delay_s = 1.5
    _, _, delivery_id = one_delivery(db_url, receiver.url)

    with pytest.raises(DeliveryFailed):
        deliver(db_url, delivery_id, allow_private=True, timeout_s=0.3)
    row = delivery_row(db_url, delivery_id)
    assert row["status"] == "PENDING" and row["attempts"] == 1
    assert row["last_status_code"] is None and "Timeout" in row["last_error"]


def test_the_target_is_checked_again_at_delivery(db_url: str, receiver: Receiver) -> None:
    _, _, delivery_id = one_delivery(db_url, receiver.url)

    with pytest.raises(DeliveryFailed):
        deliver(db_url, delivery_id, allow_private=False)
    assert receiver.requests == []
    row = delivery_row(db_url, delivery_id)
    assert row["attempts"] == 1 and "loopback" in row["last_error"]


def test_delivery_connects_to_the_vetted_address_with_the_original_host(
    db_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name is resolved once, checked, and that address is used: no second lookup."""
    monkeypatch.setattr(socket, "getaddrinfo", _fake_dns({"hooks.example.test": ["127.0.0.1"]}))
    monkeypatch.setattr(targets, "refusal", lambda ip: None)  # pretend 127.0.0.1 is public
    url = f"http://hooks.example.test:{receiver.port}/hook"
    _, _, delivery_id = one_delivery(db_url, url)

    deliver(db_url, delivery_id, allow_private=False)

    (received,) = receiver.requests
    assert received.headers["Host"] == f"hooks.example.test:{receiver.port}"
    assert delivery_row(db_url, delivery_id)["status"] == "DELIVERED"


# --- the async store (API side) ------------------------------------------------------------


def test_store_functions_are_scoped_to_the_tenant(db_url: str) -> None:
    async def scenario() -> None:
        async with AsyncConnectionPool(db_url, min_size=1, max_size=2, open=False) as pool:
            tenant, other = str(uuid.uuid4()), str(uuid.uuid4())
            made = [
                await store.create_webhook(
                    pool,
                    tenant,
                    url=f"http://a.example/{i}",
                    events=["export.completed"],
                    secret=f"secret-{i}-" + "x" * 16,
                    created_by="tester",
                )
                for i in range(3)
            ]
            await store.create_webhook(
                pool,
                other,
                url="http://b.example",
                events=["bulk_job.failed"],
                secret="y" * 16,
                created_by="other",
            )
            first, cursor = await store.list_webhooks(pool, tenant, limit=2, cursor=None)
            assert cursor is not None
            rest, end = await store.list_webhooks(pool, tenant, limit=2, cursor=cursor)
            assert end is None
            assert [w.id for w in first + rest] == [w.id for w in made]
            assert all(type(w) is store.Webhook for w in first + rest)  # no secret
            assert made[0].secret.startswith("secret-0-")

            assert await store.get_webhook(pool, tenant, made[0].id) is not None
            assert await store.get_webhook(pool, other, made[0].id) is None
            assert not await store.delete_webhook(pool, other, made[0].id)

            with psycopg.connect(db_url) as conn:
                ids = [
                    record_event(conn, tenant, "export.completed", {"n": n})[0] for n in range(3)
                ]
                conn.commit()
            # only made[0..2] subscribe; each event fans out to all three: pick made[0]'s
            deliveries, more = await store.list_deliveries(
                pool, tenant, made[0].id, limit=2, cursor=None
            )
            assert more is not None
            newer, done = await store.list_deliveries(
                pool, tenant, made[0].id, limit=2, cursor=more
            )
            assert done is None
            listed = deliveries + newer
            assert len(listed) == 3
            keys = [(d.created_at, d.id) for d in listed]
            assert keys == sorted(keys)  # oldest first, like every list
            assert all(d.status == "PENDING" and d.attempts == 0 for d in listed)
            assert {str(d.id) for d in listed} & set(ids)
            assert await store.list_deliveries(pool, other, made[0].id, limit=10, cursor=None) == (
                [],
                None,
            )

            assert await store.delete_webhook(pool, tenant, made[0].id)
            assert await store.get_webhook(pool, tenant, made[0].id) is None
            assert not await store.delete_webhook(pool, tenant, made[0].id)
            assert await store.list_deliveries(pool, tenant, made[0].id, limit=10, cursor=None) == (
                [],
                None,
            )

    asyncio.run(scenario())


# --- the HTTP API (once mounted) -----------------------------------------------------------


@needs_api
def test_register_get_list_and_delete_a_webhook(tenant: Tenant, other_tenant: Tenant) -> None:
    response = tenant.post(
        "/webhooks", json={"url": "https://hooks.example.com/pim", "events": ["export.completed"]}
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert set(created) == {
        "id",
        "url",
        "events",
        "version",
        "created_at",
        "updated_at",
        "secret",
    }
    assert created["version"] == 1 and response.headers["ETag"] == '"1"'
    assert created["updated_at"] == created["created_at"]
    assert created["url"] == "https://hooks.example.com/pim"
    assert created["events"] == ["export.completed"]
    assert len(created["secret"]) >= 32
    assert response.headers["Location"] == (
        f"{tenant.base_url}/api/v1/pim/webhooks/{created['id']}"
    )

    fetched = tenant.get(f"/webhooks/{created['id']}")
    assert fetched.status_code == 200 and fetched.headers["ETag"] == '"1"'
    assert fetched.json() == {k: v for k, v in created.items() if k != "secret"}
    listed = tenant.get("/webhooks").json()
    assert [w["id"] for w in listed] == [created["id"]]
    assert "secret" not in listed[0]

    assert_problem(other_tenant.get(f"/webhooks/{created['id']}"), 404)
    assert other_tenant.get("/webhooks").json() == []
    assert_problem(other_tenant.delete(f"/webhooks/{created['id']}"), 404)
    assert_problem(tenant.get("/webhooks/not-a-uuid"), 404)
    assert_problem(tenant.get(f"/webhooks/{uuid.uuid4()}"), 404)

    stale = tenant.delete(f"/webhooks/{created['id']}", headers={"If-Match": '"2"'})
    assert_problem(stale, 412)
    assert tenant.get(f"/webhooks/{created['id']}").status_code == 200  # still there
    current = tenant.delete(f"/webhooks/{created['id']}", headers={"If-Match": '"1"'})
    assert current.status_code == 204
    assert_problem(tenant.get(f"/webhooks/{created['id']}"), 404)
    assert_problem(tenant.delete(f"/webhooks/{created['id']}"), 404)
    assert_problem(tenant.get(f"/webhooks/{created['id']}/deliveries"), 404)


@needs_api
def test_a_password_in_a_webhook_url_is_never_shown(tenant: Tenant) -> None:
    created = tenant.create(
        "/webhooks",
        url="https://ops:s3cr3t@hooks.example.com:8443/pim?x=1",
        events=["bulk_job.failed"],
    )
    masked = "https://ops:***@hooks.example.com:8443/pim?x=1"
    assert created["url"] == masked
    assert tenant.get(f"/webhooks/{created['id']}").json()["url"] == masked
    assert [w["url"] for w in tenant.get("/webhooks").json() if w["id"] == created["id"]] == [
        masked
    ]
    assert "s3cr3t" not in tenant.get("/webhooks").text
    no_user = tenant.create(
        "/webhooks", url="https://:pw@hooks.example.com/", events=["bulk_job.failed"]
    )
    assert no_user["url"] == "https://:***@hooks.example.com/"


@needs_api
def test_a_provided_secret_is_kept_and_events_are_deduplicated(tenant: Tenant) -> None:
    created = tenant.create(
        "/webhooks",
        url="http://127.0.0.1:9/hook",  # the test service allows private targets
        events=["bulk_job.failed", "bulk_job.completed", "bulk_job.failed"],
        secret="0123456789abcdef",
    )
    assert created["secret"] == "0123456789abcdef"
    assert created["events"] == ["bulk_job.failed", "bulk_job.completed"]


@needs_api
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "https://h.example.com", "events": []}, "events"),
        ({"url": "https://h.example.com", "events": ["nope"]}, "events[0]"),
        ({"url": "https://h.example.com", "events": ["export.completed", 7]}, "events[1]"),
        ({"url": "https://h.example.com", "events": "export.completed"}, "events"),
        ({"events": ["export.completed"]}, "url"),
        ({"url": "ftp://h.example.com/x", "events": ["export.completed"]}, "url"),
        ({"url": "not a url", "events": ["export.completed"]}, "url"),
        (
            {"url": "https://h.example.com", "events": ["export.completed"], "secret": "short"},
            "secret",
        ),
        ({"url": "https://h.example.com", "events": ["export.completed"], "x": 1}, "x"),
    ],
)
def test_invalid_registrations_are_422_naming_the_field(
    tenant: Tenant, body: dict[str, Any], field: str
) -> None:
    assert_problem(tenant.post("/webhooks", json=body), 422, field)


@needs_api
def test_malformed_and_non_json_bodies(tenant: Tenant) -> None:
    assert_problem(
        tenant.post("/webhooks", content=b"{", headers={"Content-Type": "application/json"}), 400
    )
    assert_problem(
        tenant.post("/webhooks", content=b"url=x", headers={"Content-Type": "text/plain"}), 415
    )


@needs_api
def test_webhooks_list_pages_with_a_cursor(tenant: Tenant) -> None:
    ids = [
        tenant.create("/webhooks", url=f"https://h{i}.example.com/", events=["export.completed"])[
            "id"
        ]
        for i in range(3)
    ]
    first = tenant.get("/webhooks", params={"limit": 2})
    assert [w["id"] for w in first.json()] == ids[:2]
    next_url = first.headers["Link"].split(">")[0].lstrip("<")
    second = tenant.get(next_url)
    assert [w["id"] for w in second.json()] == ids[2:]
    assert "Link" not in second.headers
    assert_problem(tenant.get("/webhooks", params={"limit": 0}), 400)
    assert_problem(tenant.get("/webhooks", params={"cursor": "garbage"}), 400)


@needs_api
def test_a_webhooks_deliveries_are_listed_oldest_first(
    tenant: Tenant, other_tenant: Tenant, service: Service
) -> None:
    hook = tenant.create("/webhooks", url="https://h.example.com/", events=["bulk_job.failed"])
    with psycopg.connect(service.database_url) as conn:
        older = record_event(conn, tenant.tenant_id, "bulk_job.failed", {"job_id": "a"})
        conn.commit()
        newer = record_event(conn, tenant.tenant_id, "bulk_job.failed", {"job_id": "b"})
        conn.commit()

    listed = tenant.get(f"/webhooks/{hook['id']}/deliveries").json()
    assert [d["id"] for d in listed] == older + newer
    assert set(listed[0]) == {
        "id",
        "event_id",
        "event_type",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "version",
        "created_at",
        "updated_at",
        "delivered_at",
    }
    assert listed[0]["event_type"] == "bulk_job.failed"
    assert listed[0]["version"] == 1  # recorded, not attempted yet
    assert_problem(other_tenant.get(f"/webhooks/{hook['id']}/deliveries"), 404)
    page = tenant.get(f"/webhooks/{hook['id']}/deliveries", params={"limit": 1})
    assert [d["id"] for d in page.json()] == older and "Link" in page.headers
    next_url = page.headers["Link"].split(">")[0].lstrip("<")
    assert [d["id"] for d in tenant.get(next_url).json()] == newer


@needs_events
def test_a_completed_export_is_delivered_signed(tenant: Tenant, receiver: Receiver) -> None:
    hook = tenant.create("/webhooks", url=receiver.url, events=["export.completed"])
    job = tenant.post("/export", json={"format": "ndjson"})
    assert job.status_code == 202, job.text

    (received,) = receiver.wait_for(1)
    assert received.headers["X-PIM-Event"] == "export.completed"
    assert verify(hook["secret"], received)
    event = msgspec.json.decode(received.body)
    assert event["type"] == "export.completed"
    assert event["data"]["job_id"] == job.json()["id"]

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        (delivery,) = tenant.get(f"/webhooks/{hook['id']}/deliveries").json()
        if delivery["status"] == "DELIVERED":
            break
        time.sleep(0.1)
    assert delivery["status"] == "DELIVERED" and delivery["attempts"] == 1
    assert delivery["version"] == 2  # recorded, then one attempt
    assert delivery["id"] == received.headers["X-PIM-Delivery"]
    assert httpx.URL(receiver.url).host == "127.0.0.1"
