"""The raw baselines: what the database, or eventsourcing's own ``app.save``, does for the same
work without the service, measured in the same run on the same PostgreSQL server.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from bench.harness import CONCURRENCY, LoadResult, measure
from bench.jobs import IMPORT_VARIANTS
from bench.servers import fresh_database
from pim.domain.context import Actor
from pim.domain.product import Product
from pim.domain.variant import Variant
from pim.eventstore import CatalogApplication
from pim.infra.database import eventsourcing_env

if TYPE_CHECKING:
    from bench.context import Bench


RAW_DDL = "CREATE TABLE IF NOT EXISTS bench_raw (id uuid PRIMARY KEY, title text)"
RAW_INSERT = "INSERT INTO bench_raw (id, title) VALUES (%s, %s)"
RAW_SAVE_BATCH = 500  # aggregates per app.save in the raw baselines (the jobs' batch size)
EXPORT_COLUMNS = (
    "id, title, description, category, status, brand_id, template_id, attributes,"
    " variant_count, version, created_at, updated_at"
)


async def _raw_connection(bench: Bench) -> psycopg.AsyncConnection[Any]:
    conn = await psycopg.AsyncConnection.connect(bench.database_url)
    await conn.execute(RAW_DDL)
    await conn.commit()
    return conn


async def raw_insert_load(bench: Bench) -> LoadResult:
    """The write baseline: single-row INSERT + COMMIT on CONCURRENCY raw connections to
    the same database (``Bench.raw_insert`` measures it once per run)."""
    conns = [await _raw_connection(bench) for _ in range(CONCURRENCY)]
    sequence = iter(range(10**9))
    try:

        async def insert(index: int) -> str | None:
            conn = conns[index]
            await conn.execute(RAW_INSERT, (uuid.uuid4(), f"raw product {next(sequence)}"))
            await conn.commit()
            return None

        return await measure(insert, CONCURRENCY, bench.seconds)
    finally:
        for conn in conns:
            await conn.close()


def _read_log(database_url: str) -> tuple[int, float]:
    """(rows, seconds) of reading the whole log with eventsourcing's own recorder."""
    app = CatalogApplication(env=eventsourcing_env(database_url))
    try:
        recorder: Any = app.recorder
        rows, start = 0, 1
        t0 = time.perf_counter()
        while batch := recorder.select_notifications(start, 1000):
            rows += len(batch)
            start = batch[-1].id + 1
        return rows, time.perf_counter() - t0
    finally:
        app.close()


def _bench_actor() -> Actor:
    return Actor(str(uuid.uuid4()), str(uuid.uuid4()), "bench", None, "bench")


def _new_products(actor: Actor, start: int, count: int) -> list[Product]:
    return [
        Product.create(actor, str(uuid.uuid4()), {"title": f"bulk product {i:06d}"})
        for i in range(start, start + count)
    ]


def _raw_create_saves(admin_url: str, aggregates: int) -> tuple[float, float]:
    """(seconds in app.save, seconds building the aggregates) of saving ``aggregates``
    Product.Created events with eventsourcing, RAW_SAVE_BATCH a save, on a scratch database."""
    with fresh_database(admin_url) as url:
        app = CatalogApplication(env=eventsourcing_env(url))
        try:
            actor = _bench_actor()
            save_s = build_s = 0.0
            for start in range(0, aggregates, RAW_SAVE_BATCH):
                t0 = time.perf_counter()
                batch = _new_products(actor, start, min(RAW_SAVE_BATCH, aggregates - start))
                t1 = time.perf_counter()
                app.save(*batch)
                save_s += time.perf_counter() - t1
                build_s += t1 - t0
            return save_s, build_s
        finally:
            app.close()


def _raw_update_saves(admin_url: str, count: int) -> tuple[float, float, float]:
    """(seconds in app.save, seconds loading with repository.get, seconds creating them first)
    of updating ``count`` products, RAW_SAVE_BATCH a save, on a scratch database."""
    with fresh_database(admin_url) as url:
        app = CatalogApplication(env=eventsourcing_env(url))
        try:
            actor = _bench_actor()
            ids: list[str] = []
            t0 = time.perf_counter()
            for start in range(0, count, RAW_SAVE_BATCH):
                batch = _new_products(actor, start, min(RAW_SAVE_BATCH, count - start))
                app.save(*batch)
                ids += [p.id for p in batch]
            setup_s = time.perf_counter() - t0
            save_s = load_s = 0.0
            for start in range(0, count, RAW_SAVE_BATCH):
                t0 = time.perf_counter()
                loaded: list[Any] = [
                    app.repository.get(i) for i in ids[start : start + RAW_SAVE_BATCH]
                ]
                for product in loaded:
                    product.update(actor, {"title": "x"})
                t1 = time.perf_counter()
                app.save(*loaded)
                save_s += time.perf_counter() - t1
                load_s += t1 - t0
            return save_s, load_s, setup_s
        finally:
            app.close()


def _raw_price_update_saves(admin_url: str, count: int) -> float:
    """Seconds in app.save of the events a status + price update of ``count`` products with
    IMPORT_VARIANTS variants each writes (a Product.Updated and a Variant.Updated per
    variant), RAW_SAVE_BATCH products and their variants a save, on a scratch database."""
    with fresh_database(admin_url) as url:
        app = CatalogApplication(env=eventsourcing_env(url))
        try:
            actor = _bench_actor()
            batches: list[tuple[list[Product], list[Variant]]] = []
            for start in range(0, count, RAW_SAVE_BATCH):
                products = _new_products(actor, start, min(RAW_SAVE_BATCH, count - start))
                variants = [
                    Variant.create(
                        actor,
                        str(uuid.uuid4()),
                        {"product_id": p.id, "sku": f"raw-{p.id}-{k}", "price": "10.00"},
                    )
                    for p in products
                    for k in range(IMPORT_VARIANTS)
                ]
                app.save(*products, *variants)
                batches.append((products, variants))
            save_s = 0.0
            for products, variants in batches:
                for product in products:
                    product.update(actor, {"status": "DRAFT"})
                for variant in variants:
                    variant.update(actor, {"price": "11.00", "currency": "EUR"})
                t0 = time.perf_counter()
                app.save(*products, *variants)
                save_s += time.perf_counter() - t0
            return save_s
        finally:
            app.close()


def _raw_copy_export(database_url: str, tenant_id: str, path: Path) -> float:
    """Seconds to COPY the tenant's products (the export's columns and order) as CSV into a
    file, on a connection opened beforehand."""
    query = sql.SQL(
        "COPY (SELECT {} FROM products_view WHERE tenant_id = {} ORDER BY created_at, id)"
        " TO STDOUT (FORMAT csv, HEADER)"
    ).format(sql.SQL(EXPORT_COLUMNS), sql.Literal(tenant_id))
    with psycopg.connect(database_url) as conn:
        t0 = time.perf_counter()
        with path.open("wb") as out, conn.cursor() as cur, cur.copy(query) as copy:
            for block in copy:
                out.write(block)
        return time.perf_counter() - t0
