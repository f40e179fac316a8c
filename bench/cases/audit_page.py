"""audit_page_p99_ms: the newest audit page among a million events vs. its raw SQL.

It bulk-loads the events into a second fresh database of its own, served by a second
service (``pim api``: no projector).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import msgspec
import psycopg

from bench.context import Bench
from bench.harness import API_PREFIX, LoadResult, Metric, Operation, Target, tenant_headers
from bench.servers import Service, fresh_database, running_service
from pim.queries.audit import AuditFilters, build_log_query

AUDIT_TENANTS = 100
AUDIT_EVENTS = 1_000_000
AUDIT_EVENTS_SMALL = 10_000
AUDIT_PAGE = 50
AUDIT_REQUESTS = 400  # sequential requests per p99 (each of API and raw SQL)


def _copy_events(
    database_url: str,
    shape: dict[str, Any],
    topic: str,
    tenants: list[tuple[str, str]],
    count: int,
    rng: random.Random,
) -> float:
    """COPY ``count`` Product.Created events of random tenants into the log; seconds taken.
    Every row is the real row's shape with its own tenant, product, timestamp, request id."""
    encoder = msgspec.json.Encoder()
    stamp = dict(shape["timestamp"])
    base = datetime.now(UTC)
    t0 = time.perf_counter()
    with psycopg.connect(database_url) as conn:
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY catalog_events (originator_id, originator_version, topic, state)"
                " FROM STDIN (FORMAT BINARY)"
            ) as copy,
        ):
            copy.set_types(["text", "int8", "text", "bytea"])
            for i in range(count):
                tenant_id, org_id = tenants[rng.randrange(len(tenants))]
                product_id = uuid.UUID(int=rng.getrandbits(128), version=4)
                state = dict(shape)
                state["timestamp"] = {
                    **stamp,
                    "_data_": (base + timedelta(microseconds=i)).isoformat(),
                }
                state["tenant_id"] = tenant_id
                state["org_id"] = org_id
                state["request_id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                copy.write_row((f"{tenant_id}:{product_id}", 1, topic, encoder.encode(state)))
        conn.commit()
        conn.execute("ANALYZE catalog_events")
        conn.commit()
    return time.perf_counter() - t0


async def _audit_p99s(
    bench: Bench,
    service: Service,
    database_url: str,
    tenants: list[tuple[str, str]],
    rng: random.Random,
) -> tuple[LoadResult, LoadResult]:
    """Sequential p99 of the newest page of random tenants: (API, raw SQL of the same page)."""
    url = f"{service.base_url}{API_PREFIX}/audit?limit={AUDIT_PAGE}"
    headers = [tenant_headers(service.secret, t, o) for t, o in tenants]
    decoder = msgspec.json.Decoder(list[msgspec.Raw])

    async def get(index: int) -> str | None:
        async with bench.session.get(url, headers=headers[index]) as resp:
            payload = await resp.read()
            if resp.status != 200:
                return f"HTTP {resp.status}"
        items = len(decoder.decode(payload))
        return None if items == AUDIT_PAGE else f"page of {items} items"

    conn = await psycopg.AsyncConnection.connect(database_url, autocommit=True)

    async def raw(index: int) -> str | None:
        query, params = build_log_query(
            tenants[index][0], AuditFilters(), newest_first=True, after=None, limit=AUDIT_PAGE + 1
        )
        cur = await conn.execute(query, params)
        rows = await cur.fetchall()
        return None if len(rows) == AUDIT_PAGE + 1 else f"raw page of {len(rows)} rows"

    async def sequential(operation: Operation, order: list[int]) -> LoadResult:
        latencies: list[float] = []
        failures: Counter[str] = Counter()
        start = time.perf_counter()
        for index in order:
            t0 = time.perf_counter()
            try:
                failure = await operation(index)
            except (aiohttp.ClientError, TimeoutError, psycopg.Error) as exc:
                failure = type(exc).__name__
            if failure is None:
                latencies.append(time.perf_counter() - t0)
            else:
                failures[failure] += 1
        return LoadResult(len(latencies), time.perf_counter() - start, latencies, failures)

    try:
        every = list(range(len(tenants)))  # warm-up: each tenant's newest pages once
        order = [rng.randrange(len(tenants)) for _ in range(AUDIT_REQUESTS)]
        warm = await sequential(get, every)
        if warm.failures:
            raise RuntimeError(f"audit warm-up: {', '.join(warm.failure_summary())}")
        await sequential(raw, every)
        return await sequential(get, order), await sequential(raw, order)
    finally:
        await conn.close()


async def bench_audit_page(bench: Bench) -> list[Metric]:
    """The newest audit page of one tenant among 100, with 10,000 then 1,000,000 events in
    the log (a database of its own, bulk-loaded with COPY, served by a second service with no
    projector), vs. the same page's SQL on a raw connection."""
    shape_tenant = bench.new_tenant()
    product_id = await bench.create_product(shape_tenant, "audit row shape")
    async with await psycopg.AsyncConnection.connect(bench.database_url) as conn:
        cur = await conn.execute(
            "SELECT topic, state FROM catalog_events"
            " WHERE originator_id = %s AND originator_version = 1",
            (f"{shape_tenant.tenant_id}:{product_id}",),
        )
        row = await cur.fetchone()
    if row is None or not str(row[0]).endswith("Product.Created"):
        raise RuntimeError(f"no Product.Created row for the product just created: {row!r}")
    topic, shape = str(row[0]), msgspec.json.decode(bytes(row[1]))
    tenants = [(str(uuid.uuid4()), str(uuid.uuid4())) for _ in range(AUDIT_TENANTS)]
    rng = random.Random(20_261_127)

    infra = bench.infra
    # The projector of `pim serve` would spend the whole measurement projecting a million
    # bulk-loaded events; `pim api` is the same HTTP service without it.
    started: list[Service] = []
    try:
        with (
            fresh_database(infra.admin_url) as database_url,
            running_service(
                database_url, infra.redis_url, infra.work_dir, name="audit-service", command="api"
            ) as service,
        ):
            started.append(service)
            load_small = await asyncio.to_thread(
                _copy_events, database_url, shape, topic, tenants, AUDIT_EVENTS_SMALL, rng
            )
            small_api, small_raw = await _audit_p99s(bench, service, database_url, tenants, rng)
            load_big = await asyncio.to_thread(
                _copy_events,
                database_url,
                shape,
                topic,
                tenants,
                AUDIT_EVENTS - AUDIT_EVENTS_SMALL,
                rng,
            )
            big_api, big_raw = await _audit_p99s(bench, service, database_url, tenants, rng)
    finally:
        # Stopped on leaving the block: what it logged is reported with the main service's.
        for service in started:
            bench.service.problems.extend(f"audit service: {p}" for p in service.problems)
    target = Target("value", "<=", 20, "ms")
    return [
        Metric(
            "audit_page_p99_ms",
            big_api.p_ms(99),
            "ms",
            big_raw.p_ms(99),
            target,
            [
                f"{AUDIT_EVENTS} events of {AUDIT_TENANTS} tenants (COPY + ANALYZE "
                f"{load_small + load_big:.1f} s); {big_api.ok} sequential requests, "
                f"p50 {big_api.p_ms(50):.1f} ms (raw SQL p50 {big_raw.p_ms(50):.2f} ms)"
            ],
            [*big_api.failure_summary(), *big_raw.failure_summary()],
        ),
        Metric(
            "audit_page_p99_small_ms",
            small_api.p_ms(99),
            "ms",
            small_raw.p_ms(99),
            target,
            [
                f"{AUDIT_EVENTS_SMALL} events; {small_api.ok} sequential requests, "
                f"p50 {small_api.p_ms(50):.1f} ms (raw SQL p50 {small_raw.p_ms(50):.2f} ms)"
            ],
            [*small_api.failure_summary(), *small_raw.failure_summary()],
        ),
    ]
