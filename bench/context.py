"""What every benchmark case gets (``Bench``: the service, an HTTP session, the database and the
baselines and fixtures shared between cases), and what a case is (``Benchmark``).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.baselines import raw_insert_load
from bench.harness import (
    API_PREFIX,
    CONCURRENCY,
    SEED_PRODUCTS,
    SEED_TIMEOUT_S,
    Infra,
    LoadResult,
    Metric,
    RequestFailed,
    Tenant,
    measure,
    run_all,
    tenant_headers,
)
from bench.jobs import BulkCatalog, _import_catalog
from bench.servers import Service


@dataclass
class Bench:
    """What every benchmark gets: the service, an HTTP session, the database, shared baselines."""

    service: Service
    session: aiohttp.ClientSession
    database_url: str
    seconds: float
    infra: Infra
    _healthz: LoadResult | None = None
    _raw_insert: LoadResult | None = None
    _read_tenant: Tenant | None = None
    _bulk_catalog: BulkCatalog | None = None

    def url(self, path: str) -> str:
        return f"{self.service.base_url}{API_PREFIX}{path}"

    def new_tenant(self) -> Tenant:
        tenant_id, org_id = str(uuid.uuid4()), str(uuid.uuid4())
        return Tenant(tenant_id, org_id, tenant_headers(self.service.secret, tenant_id, org_id))

    async def create_product(self, tenant: Tenant, title: str) -> str:
        """POST a product and return its id (remembered on the tenant); RequestFailed if the
        answer is not a 201."""
        body = json.dumps({"title": title})
        async with self.session.post(
            self.url("/products"), data=body, headers=tenant.headers
        ) as resp:
            if resp.status != 201:
                raise RequestFailed(resp.status, await resp.text(errors="replace"))
            product_id = str((await resp.json())["id"])
        tenant.product_ids.append(product_id)
        return product_id

    async def seed(self, tenant: Tenant, count: int) -> None:
        """Create products until the tenant has ``count`` (a setup step, not measured); gives
        up on the first failed create, since every later number would be meaningless."""
        deadline = time.perf_counter() + SEED_TIMEOUT_S
        counter = iter(range(10**9))

        async def worker() -> None:
            while len(tenant.product_ids) < count:
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"seeding {count} products took over {SEED_TIMEOUT_S} s")
                await self.create_product(tenant, f"seed product {next(counter):05d}")

        await run_all(worker() for _ in range(8))

    async def read_tenant(self) -> Tenant:
        """A tenant holding SEED_PRODUCTS products, shared by the read benchmarks."""
        if self._read_tenant is None:
            tenant = self.new_tenant()
            await self.seed(tenant, SEED_PRODUCTS)
            self._read_tenant = tenant
        return self._read_tenant

    async def bulk_catalog(self) -> BulkCatalog:
        """A tenant whose catalog was imported through BULK_IMPORT jobs (the import is the
        measurement of import_100k_products_300k_variants_s), shared by the bulk benchmarks."""
        if self._bulk_catalog is None:
            self._bulk_catalog = await _import_catalog(self)
        return self._bulk_catalog

    async def healthz(self) -> LoadResult:
        """The bare-endpoint baseline: GET /healthz at CONCURRENCY, measured once per run."""
        if self._healthz is None:
            url = f"{self.service.base_url}/healthz"
            self._healthz = await measure(lambda _: self.get_ok(url, {}), CONCURRENCY, self.seconds)
        return self._healthz

    async def raw_insert(self) -> LoadResult:
        """The write baseline (``baselines.raw_insert_load``), measured once per run."""
        if self._raw_insert is None:
            self._raw_insert = await raw_insert_load(self)
        return self._raw_insert

    async def get_ok(self, url: str, headers: dict[str, str]) -> str | None:
        async with self.session.get(url, headers=headers) as resp:
            await resp.read()
            return None if resp.status == 200 else f"HTTP {resp.status}"


@dataclass(frozen=True)
class Benchmark:
    name: str
    run: Callable[[Bench], Coroutine[Any, Any, list[Metric]]]
    metrics: tuple[str, ...]
