"""api_rss_mb: memory growth of the service over the run (run last)."""

from __future__ import annotations

from bench.context import Bench
from bench.harness import Metric
from bench.servers import rss_mb


async def bench_api_rss(bench: Bench) -> list[Metric]:
    """Memory growth of the service over the run (run last: it reads the current RSS)."""
    pid = bench.service.process.pid
    return [Metric("api_rss_mb", rss_mb(pid), "MB", bench.service.startup_rss_mb)]
