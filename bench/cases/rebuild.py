"""rebuild_events_per_s: replay speed of a projection rebuild vs. reading the log raw."""

from __future__ import annotations

import asyncio
import json
import math
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import psycopg

from bench.baselines import _read_log
from bench.context import Bench
from bench.harness import Metric, RequestFailed, Target, run_all
from bench.servers import _pim_executable

REBUILD_MIN_EVENTS = 30_000  # the log the rebuild replays holds at least this many events
REBUILD_NESTED_VARIANTS = 50  # per generating POST: ~3 events per variant + the product
REBUILD_CLIENTS = 12
REBUILD_TIMEOUT_S = 300.0
CATCH_UP_TIMEOUT_S = 120.0


async def _log_head(conn: psycopg.AsyncConnection[Any]) -> int:
    cur = await conn.execute("SELECT COALESCE(MAX(notification_id), 0) FROM catalog_events")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def _wait_projections(conn: psycopg.AsyncConnection[Any], head: int) -> float:
    """Seconds until every live projection has reached ``head``."""
    t0 = time.perf_counter()
    while True:
        cur = await conn.execute("SELECT COALESCE(MIN(position), 0) FROM projection_tracking")
        row = await cur.fetchone()
        if row and int(row[0]) >= head:
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > CATCH_UP_TIMEOUT_S:
            raise RuntimeError(f"projections not at position {head} after {CATCH_UP_TIMEOUT_S} s")
        await asyncio.sleep(0.1)


def _timed_run(argv: list[str], env: dict[str, str], timeout: float) -> tuple[float, str]:
    """(wall seconds, output) of a command that must succeed."""
    t0 = time.perf_counter()
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[1:])} exited with {done.returncode}: "
            f"{(done.stderr or done.stdout)[-600:]}"
        )
    return elapsed, done.stdout + done.stderr


async def bench_rebuild(bench: Bench) -> list[Metric]:
    """Replay speed of a blue/green rebuild of the products projection (a `pim` subprocess,
    its interpreter start-up subtracted) vs. reading the same log with eventsourcing's
    recorder, 1000 rows at a time."""
    conn = await psycopg.AsyncConnection.connect(bench.database_url, autocommit=True)
    try:
        head = await _log_head(conn)
        tenant = bench.new_tenant()
        run = secrets.token_hex(4)
        events_per_post = 3 * REBUILD_NESTED_VARIANTS + 1
        posts = 0
        t0 = time.perf_counter()
        while head < REBUILD_MIN_EVENTS:
            needed = math.ceil((REBUILD_MIN_EVENTS - head) / events_per_post)
            jobs = iter(range(posts, posts + needed))  # shared: each POST is made once

            async def worker(jobs: Iterator[int] = jobs) -> None:
                for job in jobs:
                    variants = [
                        {"sku": f"rb-{run}-{job}-{k}", "price": "9.99", "currency": "USD"}
                        for k in range(REBUILD_NESTED_VARIANTS)
                    ]
                    body = json.dumps({"title": f"rebuild load {job}", "variants": variants})
                    async with bench.session.post(
                        bench.url("/products"), data=body, headers=tenant.headers
                    ) as resp:
                        if resp.status != 201:
                            raise RequestFailed(resp.status, await resp.text(errors="replace"))
                        await resp.read()

            await run_all(worker() for _ in range(REBUILD_CLIENTS))
            posts += needed
            head = await _log_head(conn)
        generate_s = time.perf_counter() - t0
        catch_up_s = await _wait_projections(conn, head)
        cur = await conn.execute("SELECT count(*) FROM catalog_events")
        row = await cur.fetchone()
        events = int(row[0]) if row else 0
    finally:
        await conn.close()

    env = bench.service.env
    startup = min(
        [
            (
                await asyncio.to_thread(
                    _timed_run, [sys.executable, "-c", "import pim.cli"], env, 60
                )
            )[0]
            for _ in range(3)
        ]
    )
    rebuild_s, output = await asyncio.to_thread(
        _timed_run,
        [_pim_executable(), "projections", "rebuild", "products", "--quiet"],
        env,
        REBUILD_TIMEOUT_S,
    )
    reached = re.search(r"up to position (\d+)", output)
    if reached is None or int(reached.group(1)) < head:
        raise RuntimeError(f"rebuild did not reach position {head}: {output[-300:]}")

    await asyncio.to_thread(_read_log, bench.database_url)  # warm-up: same pages, pool, etc.
    raw_rows, raw_s = await asyncio.to_thread(_read_log, bench.database_url)
    if raw_rows != events:
        raise RuntimeError(f"the recorder read {raw_rows} rows of {events}")

    replay_s = max(rebuild_s - startup, 1e-6)
    notes = [
        f"{events} events; rebuild wall {rebuild_s:.2f} s - start-up {startup:.2f} s "
        f"(import pim.cli) = {replay_s:.2f} s; recorder read {raw_s:.2f} s",
        f"log generated by {posts} POSTs of {REBUILD_NESTED_VARIANTS} variants at "
        f"{REBUILD_CLIENTS} clients in {generate_s:.1f} s; live projections caught up "
        f"{catch_up_s:.1f} s later",
    ]
    target = Target("ratio", ">=", 0.5)
    return [
        Metric(
            "rebuild_events_per_s", events / replay_s, "events/s", raw_rows / raw_s, target, notes
        )
    ]
