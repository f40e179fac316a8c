"""Bulk update, delete and import: items in batches, each batch one catalog transaction that
also records the batch's per-item results in the job's progress aggregate (exactly once).

Each item becomes commands (create, update, delete) run through a command batch: the same
handlers and rules as single API requests, in one transaction per batch."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import msgspec

from pim.commands.batch import CommandBatch
from pim.commands.messages import CreateEntity, DeleteEntity, UpdateEntity
from pim.domain.context import Actor
from pim.domain.decoding import convert_strict
from pim.domain.errors import Conflict, DomainError, FieldError, NotFound, ValidationFailed
from pim.domain.money import minor_units
from pim.domain.product import Product, ProductInput
from pim.domain.resource import READ_ONLY, provided_fields
from pim.domain.variant import Variant
from pim.eventstore import EventStore, IntegrityError
from pim.jobs.payloads import (
    BulkDeletePayload,
    BulkImportPayload,
    BulkUpdatePayload,
    PriceChange,
)
from pim.jobs.progress import JobProgress, progress_id

if TYPE_CHECKING:  # the bus answers job submissions with kinds that name this module's work
    from pim.commands.bus import CommandBus

BATCH_SIZE = 500
MAX_BATCH_ATTEMPTS = 10

ItemFn = Callable[[CommandBatch, int, Any], str]


class ItemFailed(Exception):
    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(errors)
        self.errors = errors


def _errors_of(exc: Exception) -> list[dict[str, str]]:
    if isinstance(exc, ValidationFailed):
        return [{"field": e.field, "code": e.code, "message": e.message} for e in exc.errors]
    if isinstance(exc, NotFound):
        return [{"field": "id", "code": "not_found", "message": exc.detail}]
    if isinstance(exc, Conflict):
        return [{"field": exc.field or "", "code": "conflict", "message": exc.detail}]
    if isinstance(exc, DomainError):
        return [{"field": "", "code": "invalid", "message": exc.detail}]
    raise exc


def new_price(change: PriceChange, variant: Variant) -> tuple[str | None, str | None] | None:
    """The variant's new (price, currency), None when the change does not apply to it."""
    current = variant.fields.get("price")
    currency = change.currency or variant.fields.get("currency")
    if change.op == "set":
        amount = change.value
    elif current is None:
        return None  # add/multiply need a price to start from
    elif change.op == "add":
        amount = Decimal(current) + change.value
    else:
        amount = Decimal(current) * change.value
    exponent = minor_units(str(currency)) if currency else None
    if exponent is not None:
        try:
            amount = amount.quantize(Decimal(1).scaleb(-exponent), rounding=ROUND_HALF_UP)
        except InvalidOperation:
            raise ValidationFailed(
                [FieldError("price", "out_of_range", "the new price is out of range")]
            ) from None
    return str(amount), currency


PrefetchFn = Callable[[CommandBatch, int, Sequence[Any]], None]


def _no_prefetch(batch: CommandBatch, start: int, items: Sequence[Any]) -> None:
    return None


@dataclass
class BulkItems:
    """What one job works through: a kind of change, its items, how to apply one, and what
    to load in bulk before a batch (one query instead of one per aggregate)."""

    items: Sequence[Any]
    apply: ItemFn
    prefetch: PrefetchFn = _no_prefetch


def prefetch_products(batch: CommandBatch, product_ids: Sequence[str], *, variants: bool) -> None:
    """What commands on these products read (without it each command of the batch would
    load its own), then (optionally) their variants."""
    batch.prefetch_for(Product.entity_type, product_ids)
    if variants:
        variant_ids: list[str] = []
        for product_id in product_ids:
            children = batch.find_children(product_id)
            if children is not None:
                variant_ids += children.of_type(Variant.entity_type)
        batch.prefetch([batch.entity_key(v) for v in variant_ids])


def update_items(
    actor: Actor, job_id: str, payload: BulkUpdatePayload, ids: Sequence[str]
) -> BulkItems:
    values = provided_fields(payload.set, ignore=frozenset()) if payload.set else {}

    def apply(batch: CommandBatch, index: int, product_id: str) -> str:
        if values:
            batch.run(UpdateEntity(actor, Product.entity_type, product_id, values))
        else:
            batch.get(Product, product_id)  # must exist (404 otherwise)
        if payload.price is not None:
            children = batch.find_children(product_id)
            for variant_id in children.of_type(Variant.entity_type) if children else []:
                variant = batch.find(Variant, variant_id)
                change = new_price(payload.price, variant) if variant else None
                if change is not None:
                    price, currency = change
                    batch.run(
                        UpdateEntity(
                            actor,
                            Variant.entity_type,
                            variant_id,
                            {"price": price, "currency": currency},
                            parent_id=product_id,
                        )
                    )
        return product_id

    def prefetch(batch: CommandBatch, start: int, items: Sequence[Any]) -> None:
        prefetch_products(batch, [str(i) for i in items], variants=payload.price is not None)

    return BulkItems(ids, apply, prefetch)


def delete_items(
    actor: Actor, job_id: str, payload: BulkDeletePayload, ids: Sequence[str]
) -> BulkItems:
    def apply(batch: CommandBatch, index: int, product_id: str) -> str:
        batch.run(DeleteEntity(actor, Product.entity_type, product_id))
        return product_id

    def prefetch(batch: CommandBatch, start: int, items: Sequence[Any]) -> None:
        prefetch_products(batch, [str(i) for i in items], variants=True)

    return BulkItems(ids, apply, prefetch)


def import_items(
    actor: Actor, job_id: str, payload: BulkImportPayload, ids: Sequence[str]
) -> BulkItems:
    """The products of the payload (``ids`` is empty: an import selects nothing)."""
    namespace = uuid.UUID(job_id)

    def apply(batch: CommandBatch, index: int, item: Any) -> str:
        data = convert_strict(item, ProductInput)
        values = provided_fields(data, ignore=READ_ONLY | {"variants"})
        variants = (
            [provided_fields(v, ignore=READ_ONLY | {"product_id"}) for v in (data.variants or [])]
            if data.variants is not msgspec.UNSET
            else []
        )
        # Deterministic ids: a batch retried after a crash creates the same products.
        product_id = str(uuid.uuid5(namespace, str(index)))
        batch.run(
            CreateEntity(
                actor, Product.entity_type, values, variants=variants, entity_id=product_id
            )
        )
        return product_id

    def prefetch(batch: CommandBatch, start: int, items: Sequence[Any]) -> None:
        """The unique values and references the new products will check."""
        keys: list[str] = []
        for offset, item in enumerate(items):
            keys.append(batch.children_key(str(uuid.uuid5(namespace, str(start + offset)))))
            if not isinstance(item, dict):
                continue
            # Best effort: whatever is malformed is reported per item when it is applied.
            variants = item.get("variants")
            for variant in variants if isinstance(variants, list) else []:
                if isinstance(variant, dict) and isinstance(variant.get("sku"), str):
                    keys.append(batch.unique_key("sku", variant["sku"]))
            if isinstance(item.get("category"), str):
                keys.append(batch.unique_key("category-slug", item["category"]))
            for key in (
                item.get("attributes") or {} if isinstance(item.get("attributes"), dict) else {}
            ):
                keys.append(batch.unique_key("attribute-key", str(key)))
            for ref in ("brand_id", "template_id"):
                if isinstance(item.get(ref), str):
                    keys.append(batch.entity_key(item[ref]))
        batch.prefetch(keys)

    return BulkItems(payload.products, apply, prefetch)


def load_progress(store: EventStore, actor: Actor, job_id: str) -> JobProgress:
    found = store.find(progress_id(actor.tenant_id, job_id))
    if isinstance(found, JobProgress):
        return found
    return JobProgress.begin(actor, progress_id(actor.tenant_id, job_id))


def prepare_batch(
    bus: CommandBus, actor: Actor, work: BulkItems, start: int, end: int
) -> CommandBatch:
    """A command batch with what items[start:end] need already loaded (one query)."""
    batch = bus.batch(actor)
    work.prefetch(batch, start, work.items[start:end])
    return batch


def apply_batch(
    bus: CommandBus,
    actor: Actor,
    job_id: str,
    work: BulkItems,
    start: int,
    end: int,
    *,
    dry_run: bool,
    progress: JobProgress | None = None,
    prepared: CommandBatch | None = None,
) -> tuple[int | None, JobProgress]:
    """Apply items[start:end] and record their results in one transaction. Items that fail
    are recorded as failed and the batch is re-run without them, so one bad item never
    leaves another's half-made changes behind. ``progress`` is the job's progress as the
    previous batch left it (reloaded from the log when absent or after a conflict: rebuilding
    it before every batch would cost more with every batch). ``prepared`` is the batch's
    unit of work loaded ahead of time, while the previous batch was applied. That is sound
    because a job's items do not share what they write (shared references such as
    categories and brands are only read, and jobs never write them); should anything it
    writes have changed meanwhile, the save conflicts and the batch is redone from fresh
    state."""
    excluded: dict[int, list[dict[str, str]]] = {}
    for _ in range(MAX_BATCH_ATTEMPTS + end - start):
        if progress is None:
            progress = load_progress(bus.store, actor, job_id)
        if progress.next_index >= end:
            return None, progress  # already applied (a redelivered message)
        batch = prepared or prepare_batch(bus, actor, work, start, end)
        prepared = None  # a second attempt starts from fresh state
        results: list[dict[str, Any]] = []
        failed_now = False
        for index in range(start, end):
            if index in excluded:
                item = work.items[index]
                results.append(
                    {
                        "index": index,
                        "id": item if isinstance(item, str) else None,
                        "status": "FAILED",
                        "errors": excluded[index],
                    }
                )
                continue
            try:
                entity_id = work.apply(batch, index, work.items[index])
            except DomainError as exc:
                excluded[index] = _errors_of(exc)
                failed_now = True
                break
            results.append({"index": index, "id": entity_id, "status": "SUCCEEDED", "errors": []})
        if failed_now:
            continue
        progress.record(actor, start, end, results)
        try:
            return batch.commit(progress, dry_run=dry_run), progress
        except IntegrityError:
            progress = None  # someone changed one of these aggregates meanwhile: redo from fresh
            continue
    raise RuntimeError(f"batch {start}..{end} of job {job_id} kept conflicting")
