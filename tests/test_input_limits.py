"""Hard limits at the edge: oversized heads, oversized or loosely typed tokens, bodies that
are not UTF-8 and negative zero prices get a clear 4xx, and nothing is stored."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import socket
import time
from urllib.parse import urlsplit

import pytest

from tests.conftest import JWT_SECRET, Service, Tenant, assert_problem


def _raw_exchange(base_url: str, request: bytes) -> bytes:
    """Send raw bytes, read the answer until the server closes (or 5 s pass)."""
    address = urlsplit(base_url)
    with socket.create_connection((address.hostname, address.port), timeout=5) as conn:
        # The server may answer and close before the rest was sent.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.sendall(request)
        answer = b""
        try:
            while chunk := conn.recv(65536):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return answer


@pytest.mark.parametrize(
    "headers",
    [
        [(b"X-Big", b"a" * (17 * 1024))],  # one header over 16 KiB
        [(b"X-Part-%d" % i, b"b" * 10_000) for i in range(8)],  # 80 KB in all
    ],
    ids=["one-header", "all-headers"],
)
def test_request_heads_over_the_limits_are_431(
    service: Service, headers: list[tuple[bytes, bytes]]
) -> None:
    lines = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    request = b"GET /healthz HTTP/1.1\r\nHost: pim\r\n" + lines + b"\r\n"
    answer = _raw_exchange(service.base_url, request)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"content-type: application/problem+json" in head.lower()
    assert json.loads(body)["status"] == 431


def test_a_head_that_never_ends_is_cut_off(service: Service) -> None:
    """A header streamed without end is refused once it passes the limit, not buffered."""
    endless = b"GET /healthz HTTP/1.1\r\nHost: pim\r\nX-Endless: " + b"c" * (2 * 1024 * 1024)
    answer = _raw_exchange(service.base_url, endless)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


def test_heads_within_the_limits_and_large_bodies_are_served(tenant: Tenant) -> None:
    big_but_fine = {"X-Trace": "t" * 15_000}
    assert tenant.get("/products", headers=big_but_fine).status_code == 200
    # A body of several megabytes is not a head: it reaches the route.
    many = [{"title": f"P{i}", "description": "d" * 200} for i in range(10_000)]
    job = {"type": "BULK_IMPORT", "payload": {"products": many}}
    response = tenant.post("/bulk-jobs", json=job)
    assert response.status_code == 202, response.text[:300]


def _hs256(claims: dict[str, object]) -> str:
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = part(json.dumps(claims).encode())
    signature = hmac.new(JWT_SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256)
    return f"{header}.{payload}.{part(signature.digest())}"


def _claims(tenant: Tenant, **overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": tenant.subject,
        "tenant_id": tenant.tenant_id,
        "org_ids": [tenant.org_id],
        "scope": "pim:read pim:write",
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return claims


def test_the_hand_made_token_is_accepted(tenant: Tenant) -> None:
    """The control for the cases below: a token built here the same way is valid."""
    token = _hs256(_claims(tenant))
    assert tenant.get("/products", headers=tenant.headers(token)).status_code == 200


def test_a_validly_signed_token_over_8_kib_is_401(tenant: Tenant) -> None:
    token = _hs256(_claims(tenant, padding="p" * 9000))
    assert_problem(tenant.get("/products", headers=tenant.headers(token)), 401)


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
def test_date_claims_must_be_numbers(tenant: Tenant, claim: str) -> None:
    now = int(time.time())
    value = {"exp": now + 600, "nbf": now - 10, "iat": now}[claim]
    token = _hs256(_claims(tenant, **{claim: str(value)}))
    assert_problem(tenant.get("/products", headers=tenant.headers(token)), 401)


BODY_ROUTES = ["/products", "/categories", "/media", "/webhooks", "/export", "/bulk-jobs"]


@pytest.mark.parametrize("path", BODY_ROUTES)
def test_invalid_utf8_inside_a_string_is_400_on_every_route(tenant: Tenant, path: str) -> None:
    # Invalid UTF-8 in a string, and an unknown field (the path that used to fail with 500).
    body = b'{"title": "bad \xff\xfe bytes", "name": "x\xc3", "unknown_field": 1}'
    response = tenant.post(path, content=body, headers={"Content-Type": "application/json"})
    assert_problem(response, 400)
    assert tenant.get("/audit").json() == []


def test_negative_zero_prices_are_stored_as_zero(tenant: Tenant) -> None:
    product = tenant.create_product(variants=[{"sku": "Z-1", "price": "-0.00", "currency": "EUR"}])
    variants = tenant.get(f"/products/{product['id']}/variants").json()
    assert [v["price"] for v in variants] == ["0.00"]
    variant = variants[0]
    updated = tenant.patch(
        f"/products/{product['id']}/variants/{variant['id']}", json={"price": "-0"}
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["price"] in ("0", "0.00")
    assert not updated.json()["price"].startswith("-")
