"""Reporting: the results table, ``bench/results.json`` and the run's environment."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench.context import Benchmark
from bench.harness import CONCURRENCY, Metric, _seconds

RESULTS_FILE = Path(__file__).with_name("results.json")


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def print_table(metrics: list[Metric]) -> None:
    header = ("metric", "value", "unit", "baseline", "ratio", "target", "met?")
    rows = [header]
    for m in metrics:
        if m.errors:
            met = "ERR"  # requests failed: the number is not a measurement of a working service
        elif m.target is None:
            met = "-"
        else:
            met = "yes" if m.target.met(m) else "NO"
        rows.append(
            (
                m.name,
                _fmt(m.value),
                m.unit,
                _fmt(m.baseline),
                _fmt(m.ratio),
                str(m.target) if m.target else "-",
                met,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for n, row in enumerate(rows):
        print(
            "  ".join(
                cell.ljust(w) if i in (0, 2, 5, 6) else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))
    notes = [(m.name, note) for m in metrics for note in [*m.notes, *m.errors]]
    if notes:
        print("\nnotes:")
        for name, note in notes:
            print(f"  {name}: {note}")


def write_results(metrics: list[Metric], environment: dict[str, Any]) -> None:
    """Merge into the existing file, keeping metrics this run did not measure."""
    existing: dict[str, Any] = {}
    if RESULTS_FILE.exists():
        with contextlib.suppress(ValueError, OSError):
            existing = json.loads(RESULTS_FILE.read_text())
    merged = dict(existing.get("metrics") or {})
    merged.update({m.name: m.to_json() for m in metrics})
    out = {"metrics": dict(sorted(merged.items())), "environment": environment}
    RESULTS_FILE.write_text(json.dumps(out, indent=2) + "\n")


def environment(
    database_url: str, pg_mode: str, redis_mode: str, benchmarks: list[Benchmark]
) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "postgres": row[0] if row else "unknown",
        "postgres_mode": pg_mode,
        "redis_mode": redis_mode,
        "seconds_per_measurement": _seconds(),
        "concurrency": CONCURRENCY,
        "benchmarks": [b.name for b in benchmarks],
    }


def report_problems(problems: list[str]) -> None:
    if problems:
        print("\nservice problems:")
        for problem in problems:
            print(f"  {problem}")
