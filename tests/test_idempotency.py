"""Idempotency-Key on POST: replay, mismatch, in flight, per tenant."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg

from tests.conftest import Service, Tenant, assert_problem


def test_the_same_key_and_body_replays_the_first_response(tenant: Tenant) -> None:
    key = str(uuid.uuid4())
    first = tenant.post("/products", json={"title": "Once"}, headers={"Idempotency-Key": key})
    second = tenant.post("/products", json={"title": "Once"}, headers={"Idempotency-Key": key})
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["location"] == first.headers["location"]
    assert second.headers["etag"] == first.headers["etag"]
    assert second.headers["idempotent-replayed"] == "true"
    assert len(tenant.get("/products").json()) == 1


def test_a_client_error_is_replayed_too(tenant: Tenant) -> None:
    key = str(uuid.uuid4())
    first = tenant.post("/products", json={"title": ""}, headers={"Idempotency-Key": key})
    second = tenant.post("/products", json={"title": ""}, headers={"Idempotency-Key": key})
    assert first.status_code == second.status_code == 422
    assert second.json() == first.json()


def test_the_same_key_with_another_body_is_422(tenant: Tenant) -> None:
    key = str(uuid.uuid4())
    tenant.post("/products", json={"title": "A"}, headers={"Idempotency-Key": key})
    response = tenant.post("/products", json={"title": "B"}, headers={"Idempotency-Key": key})
    assert_problem(response, 422)
    assert [p["title"] for p in tenant.get("/products").json()] == ["A"]


def test_keys_are_per_tenant(tenant: Tenant, other_tenant: Tenant) -> None:
    key = str(uuid.uuid4())
    a = tenant.post("/products", json={"title": "A"}, headers={"Idempotency-Key": key})
    b = other_tenant.post("/products", json={"title": "A"}, headers={"Idempotency-Key": key})
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]
    assert "idempotent-replayed" not in b.headers


def test_a_key_still_in_flight_is_409(tenant: Tenant, service: Service) -> None:
    key = str(uuid.uuid4())
    first = tenant.post("/products", json={"title": "A"}, headers={"Idempotency-Key": key})
    assert first.status_code == 201
    # Put the key back in the state of a request that has not finished yet.
    with psycopg.connect(service.database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE idempotency_keys SET state = 'in_flight', locked_until = now() + interval"
            " '1 minute' WHERE tenant_id = %s AND key = %s",
            (tenant.tenant_id, key),
        )
    retry = tenant.post("/products", json={"title": "A"}, headers={"Idempotency-Key": key})
    assert_problem(retry, 409)
    assert len(tenant.get("/products").json()) == 1


def test_concurrent_retries_with_one_key_create_one_product(tenant: Tenant) -> None:
    key = str(uuid.uuid4())
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(
            pool.map(
                lambda _: tenant.post(
                    "/products",
                    content=b'{"title":"Race"}',
                    headers={"Idempotency-Key": key, "Content-Type": "application/json"},
                ),
                range(8),
            )
        )
    codes = {r.status_code for r in responses}
    assert codes <= {201, 409}, codes
    assert 201 in codes
    assert len(tenant.get("/products").json()) == 1
    ids = {r.json()["id"] for r in responses if r.status_code == 201}
    assert len(ids) == 1


def test_an_over_long_key_is_400(tenant: Tenant) -> None:
    response = tenant.post("/products", json={"title": "A"}, headers={"Idempotency-Key": "k" * 256})
    assert_problem(response, 400)
