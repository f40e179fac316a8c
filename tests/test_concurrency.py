"""Concurrent writers: no lost update, exactly one winner per pinned version."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.conftest import Tenant


def test_twenty_concurrent_creates_all_land_and_are_listed(tenant: Tenant) -> None:
    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(
            pool.map(lambda i: tenant.post("/products", json={"title": f"Item {i}"}), range(20))
        )
    assert [r.status_code for r in responses] == [201] * 20
    created = {r.json()["id"] for r in responses}
    listed = {p["id"] for p in tenant.get("/products").json()}
    assert listed == created


def test_concurrent_if_match_updates_have_exactly_one_winner_per_version(tenant: Tenant) -> None:
    product = tenant.create_product(title="Contested")
    path = f"/products/{product['id']}"
    for version in (1, 2, 3):
        with ThreadPoolExecutor(max_workers=10) as pool:
            responses = list(
                pool.map(
                    lambda i, v=version: tenant.patch(  # type: ignore[misc]
                        path, json={"title": f"v{v} writer {i}"}, headers={"If-Match": f'"{v}"'}
                    ),
                    range(10),
                )
            )
        codes = sorted(r.status_code for r in responses)
        assert codes == [200] + [412] * 9, codes
        winner = next(r for r in responses if r.status_code == 200).json()
        assert winner["version"] == version + 1
        assert tenant.get(path).json()["title"] == winner["title"]


def test_concurrent_updates_without_if_match_lose_nothing(tenant: Tenant) -> None:
    for i in range(12):
        tenant.attribute(f"k{i}", "NUMBER")
    product = tenant.create_product(title="Shared", attributes={})
    path = f"/products/{product['id']}"
    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(
            pool.map(lambda i: tenant.patch(path, json={"attributes": {f"k{i}": i}}), range(12))
        )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    # Each answer is the product as its own write left it: its own version and ETag, and
    # the keys of exactly the writes before it (never a later request's state).
    answers = [r.json() for r in responses]
    assert sorted(a["version"] for a in answers) == list(range(2, 14))
    for response, answer in zip(responses, answers, strict=True):
        assert response.headers["etag"] == f'"{answer["version"]}"'
        assert len(answer["attributes"]) == answer["version"] - 1
    final = tenant.get(path).json()
    # Every writer's key survived: merges were retried from fresh state, never overwritten.
    assert final["attributes"] == {f"k{i}": i for i in range(12)}
    assert final["version"] == 13
    audit = tenant.get("/audit", params={"entity_id": product["id"]}).json()
    assert len(audit) == 13


def _parent_chain_is_finite(tenant: Tenant, category_id: str) -> bool:
    seen: set[str] = set()
    current: str | None = category_id
    while current is not None:
        if current in seen:
            return False
        seen.add(current)
        current = tenant.get(f"/categories/{current}").json()["parent_id"]
    return True


def test_concurrent_moves_never_make_a_category_loop(tenant: Tenant) -> None:
    """Each move alone is fine; together they would close a loop. Exactly one wins, the other
    is refused as a cycle on its retry, whatever the interleaving."""
    for trial in range(6):
        # two-node loop: A under B while B goes under A
        a = tenant.create("/categories", name=f"A{trial}", slug=f"loop-a-{trial}")
        b = tenant.create("/categories", name=f"B{trial}", slug=f"loop-b-{trial}")
        # four-node loop: X1 under P1 (a child of X2) while X2 goes under P2 (a child of X1)
        x1 = tenant.create("/categories", name=f"X1{trial}", slug=f"loop-x1-{trial}")
        x2 = tenant.create("/categories", name=f"X2{trial}", slug=f"loop-x2-{trial}")
        p1 = tenant.create(
            "/categories", name=f"P1{trial}", slug=f"loop-p1-{trial}", parent_id=x2["id"]
        )
        p2 = tenant.create(
            "/categories", name=f"P2{trial}", slug=f"loop-p2-{trial}", parent_id=x1["id"]
        )
        for moves in (((a, b), (b, a)), ((x1, p1), (x2, p2))):
            barrier = threading.Barrier(len(moves))

            def move(
                pair: tuple[dict[str, Any], dict[str, Any]], barrier: threading.Barrier = barrier
            ) -> httpx.Response:
                child, parent = pair
                barrier.wait()
                return tenant.patch(f"/categories/{child['id']}", json={"parent_id": parent["id"]})

            with ThreadPoolExecutor(max_workers=len(moves)) as pool:
                responses = list(pool.map(move, moves))
            codes = sorted(r.status_code for r in responses)
            assert codes == [200, 422], [r.text for r in responses]
            refused = next(r for r in responses if r.status_code == 422).json()
            assert refused["errors"][0]["field"] == "parent_id"
            assert refused["errors"][0]["code"] == "cycle"
            assert all(_parent_chain_is_finite(tenant, child["id"]) for child, _ in moves)
