"""Products: /api/v1/pim/products."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

import msgspec
from anyio import to_thread
from litestar import Controller, Response, delete, get, patch, post, put
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from pim.api.bodies import decode_body, provided_fields
from pim.api.http import (
    AnyRequest,
    context_of,
    etag,
    if_match_version,
    next_link,
    path_uuid,
    query_params,
    reads_of,
    resource_url,
    services_of,
)
from pim.api.openapi import READ_RESPONSES, WRITE_RESPONSES, body_of
from pim.commands.messages import CreateProduct, DeleteProduct, UpdateProduct
from pim.domain.errors import NotFound
from pim.queries.pages import parse_limit
from pim.queries.products import ProductFilters, ProductView

UNSET = msgspec.UNSET


class ProductInput(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A product as clients send it. Read-only fields are accepted and ignored, so
    GET -> edit -> PUT works."""

    title: str | msgspec.UnsetType = UNSET
    description: str | msgspec.UnsetType | None = UNSET
    category: str | msgspec.UnsetType | None = UNSET
    status: Literal["ACTIVE", "DRAFT", "ARCHIVED"] | msgspec.UnsetType | None = UNSET
    brand_id: UUID | msgspec.UnsetType | None = UNSET
    template_id: UUID | msgspec.UnsetType | None = UNSET
    # values are checked by the domain, so errors can name the key (attributes.color)
    attributes: dict[str, Any] | msgspec.UnsetType | None = UNSET
    # read-only, ignored
    id: Any = UNSET
    version: Any = UNSET
    created_at: Any = UNSET
    updated_at: Any = UNSET
    variant_count: Any = UNSET


READ_ONLY = frozenset({"id", "version", "created_at", "updated_at", "variant_count"})


def _values(request_body: bytes, content_type: str | None) -> dict[str, Any]:
    data = decode_body(request_body, content_type, ProductInput)
    assert data is not None
    return provided_fields(data, ignore=READ_ONLY)


def _respond(view: ProductView, status: int, **headers: str) -> Response[ProductView]:
    return Response(view, status_code=status, headers={"ETag": etag(view.version), **headers})


class ProductController(Controller):
    path = "/products"
    tags = ["Products"]

    @get("/", responses=READ_RESPONSES, summary="List products")
    async def list_products(self, request: AnyRequest) -> Response[list[ProductView]]:
        ctx, _services = context_of(request), services_of(request)
        params = query_params(request)
        items, cursor = await reads_of(request).products.list(
            ctx.tenant_id,
            limit=parse_limit(params.get("limit")),
            cursor=params.get("cursor"),
            filters=ProductFilters.parse(params),
        )
        return Response(items, headers=next_link(request, cursor))

    @post(
        "/",
        status_code=HTTP_201_CREATED,
        responses=WRITE_RESPONSES,
        summary="Create a product",
        operation_class=body_of(ProductInput),
    )
    async def create_product(self, request: AnyRequest) -> Response[ProductView]:
        ctx, services = context_of(request), services_of(request)
        values = _values(await request.body(), request.headers.get("content-type"))
        command = CreateProduct(actor=ctx.actor, values=values)
        outcome, _ = await to_thread.run_sync(services.bus.handle, command)
        view = await self._read(request, outcome.entity_id)
        return _respond(view, HTTP_201_CREATED, Location=resource_url(request, "products", view.id))

    @get("/{product_id:str}", responses=READ_RESPONSES, summary="Get a product")
    async def get_product(self, request: AnyRequest, product_id: str) -> Response[ProductView]:
        view = await self._read(request, str(path_uuid(product_id, "product")))
        return _respond(view, HTTP_200_OK)

    @put(
        "/{product_id:str}",
        responses=WRITE_RESPONSES,
        summary="Update a product (merge patch)",
        operation_class=body_of(ProductInput),
    )
    async def put_product(self, request: AnyRequest, product_id: str) -> Response[ProductView]:
        return await self._update(request, product_id)

    @patch(
        "/{product_id:str}",
        responses=WRITE_RESPONSES,
        summary="Update a product (merge patch)",
        operation_class=body_of(ProductInput),
    )
    async def patch_product(self, request: AnyRequest, product_id: str) -> Response[ProductView]:
        return await self._update(request, product_id)

    @delete(
        "/{product_id:str}",
        status_code=HTTP_204_NO_CONTENT,
        responses=WRITE_RESPONSES,
        summary="Delete a product",
    )
    async def delete_product(self, request: AnyRequest, product_id: str) -> None:
        ctx, services = context_of(request), services_of(request)
        entity_id = str(path_uuid(product_id, "product"))
        command = DeleteProduct(ctx.actor, entity_id, if_match_version(request))
        await to_thread.run_sync(services.bus.handle, command)

    async def _update(self, request: AnyRequest, product_id: str) -> Response[ProductView]:
        ctx, services = context_of(request), services_of(request)
        entity_id = str(path_uuid(product_id, "product"))
        expected = if_match_version(request)
        values = _values(await request.body(), request.headers.get("content-type"))
        command = UpdateProduct(ctx.actor, entity_id, values, expected)
        await to_thread.run_sync(services.bus.handle, command)
        view = await self._read(request, entity_id)
        return _respond(view, HTTP_200_OK)

    @staticmethod
    async def _read(request: AnyRequest, entity_id: str) -> ProductView:
        ctx, _services = context_of(request), services_of(request)
        view = await reads_of(request).products.get(ctx.tenant_id, UUID(entity_id))
        if view is None:
            raise NotFound("product not found")
        return view
