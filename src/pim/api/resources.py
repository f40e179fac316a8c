"""Every resource's HTTP behaviour from one mechanism: list (keyset cursor, limit, Link),
create (201, Location, ETag, Idempotency-Key via middleware), get, PUT/PATCH as JSON Merge
Patch with If-Match and no-op detection, DELETE (204). A resource only declares its entity
type, body, view and filters."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import msgspec
from anyio import to_thread
from litestar import Response, Router, delete, get, patch, post, put
from litestar.handlers import HTTPRouteHandler
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from pim.api.bodies import decode_body
from pim.api.http import (
    AnyRequest,
    answer_for,
    context_of,
    if_match_version,
    next_link,
    path_uuid,
    query_params,
    reads_of,
    recorded,
    resource_url,
    respond,
    services_of,
)
from pim.api.inputs import READ_ONLY, provided_fields
from pim.api.openapi import READ_RESPONSES, WRITE_RESPONSES, body_of
from pim.api.problems import ApiError
from pim.commands.messages import CreateEntity, DeleteEntity, UpdateEntity, new_id
from pim.domain.errors import FieldError, NotFound
from pim.queries.pages import InvalidQuery, Rendered, parse_limit, parse_natural
from pim.queries.products import datetime_param


@dataclass(frozen=True)
class Resource:
    entity_type: str
    collection: str  # URL segment, e.g. "attribute-groups"
    input: type[msgspec.Struct]
    view: type[Any]
    tag: str
    nested_in_products: bool = False  # /products/{product_id}/<collection>
    ignore: frozenset[str] = READ_ONLY
    create_only: frozenset[str] = field(default_factory=frozenset)
    time_travel: bool = False  # GET by id accepts ?version=N and ?as_of=<time>

    @property
    def label(self) -> str:
        return self.entity_type.replace("_", " ")


def _values(
    resource: Resource, request_body: bytes, content_type: str | None, *, creating: bool
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    data = decode_body(request_body, content_type, resource.input)
    assert data is not None
    values = provided_fields(data, ignore=resource.ignore)
    nested: list[dict[str, Any]] = []
    for name in resource.create_only:
        if name in values:
            if not creating:
                raise ApiError(
                    422,
                    f"{name} can only be sent when creating",
                    slug="validation-error",
                    errors=[FieldError(name, "not_allowed", "can only be sent when creating")],
                )
            raw = values.pop(name)
            nested = [provided_fields(item, ignore=READ_ONLY | {"product_id"}) for item in raw]
    return values, nested


def _location(
    request: AnyRequest, resource: Resource, entity_id: object, product_id: str | None
) -> str:
    if resource.nested_in_products:
        return resource_url(request, f"products/{product_id}/{resource.collection}", entity_id)
    return resource_url(request, resource.collection, entity_id)


class ResourceEndpoints:
    """The behaviour, shared by every resource; the controllers below only bind routes."""

    def __init__(self, resource: Resource) -> None:
        self.r = resource

    async def _read(self, request: AnyRequest, entity_id: str, product_id: str | None) -> Rendered:
        ctx = context_of(request)
        view: Rendered | None = (
            await reads_of(request)
            .resources[self.r.entity_type]
            .get_json(ctx.tenant_id, UUID(entity_id))
        )
        if view is None or (product_id is not None and view.product_id != product_id):
            raise NotFound(f"{self.r.label} not found")
        return view

    async def _check_parent(self, request: AnyRequest, product_id: str | None) -> str | None:
        if product_id is None:
            return None
        pid = str(path_uuid(product_id, "product"))
        ctx = context_of(request)
        if await reads_of(request).resources["product"].get_json(ctx.tenant_id, UUID(pid)) is None:
            raise NotFound("product not found")
        return pid

    async def list(self, request: AnyRequest, product_id: str | None) -> Response[Any]:
        pid = await self._check_parent(request, product_id)
        ctx = context_of(request)
        params = query_params(request)
        page, cursor = (
            await reads_of(request)
            .resources[self.r.entity_type]
            .list(
                ctx.tenant_id,
                limit=parse_limit(params.get("limit")),
                cursor=params.get("cursor"),
                params=params,
                product_id=pid,
            )
        )
        # The page arrives as JSON bytes rendered by PostgreSQL; sent as they are.
        return Response(page, media_type="application/json", headers=next_link(request, cursor))

    async def create(self, request: AnyRequest, product_id: str | None) -> Response[Any]:
        ctx, services = context_of(request), services_of(request)
        pid = str(path_uuid(product_id, "product")) if product_id is not None else None
        values, nested = _values(
            self.r, await request.body(), request.headers.get("content-type"), creating=True
        )
        entity_id = new_id()
        location = _location(request, self.r, entity_id, pid)
        command = CreateEntity(
            actor=ctx.actor,
            entity_type=self.r.entity_type,
            values=values,
            parent_id=pid,
            variants=nested,
            entity_id=entity_id,
            answer=answer_for(request, HTTP_201_CREATED, Location=location),
        )
        outcome, _ = await to_thread.run_sync(services.bus.handle, command)
        recorded(request, outcome.position)
        return respond(outcome.resource, HTTP_201_CREATED, Location=location)

    async def get(
        self, request: AnyRequest, entity_id: str, product_id: str | None
    ) -> Response[Any]:
        pid = str(path_uuid(product_id, "product")) if product_id is not None else None
        eid = path_uuid(entity_id, self.r.label)
        params = query_params(request)
        if self.r.time_travel and ("version" in params or "as_of" in params):
            return respond(await self._past(request, eid, params), HTTP_200_OK)
        view = await self._read(request, str(eid), pid)
        return respond(view, HTTP_200_OK)

    async def _past(self, request: AnyRequest, entity_id: UUID, params: dict[str, str]) -> Any:
        """The resource as it was at ``?version=N`` or ``?as_of=<RFC 3339>`` (from the log)."""
        version = None
        if "version" in params and "as_of" in params:
            raise InvalidQuery("as_of", "cannot be combined with version; give one of them")
        if "version" in params:
            version = parse_natural(params["version"])
            if version is None or version < 1:
                raise InvalidQuery("version", "must be a positive integer")
        as_of = datetime_param("as_of", params["as_of"]) if "as_of" in params else None
        view = await reads_of(request).history.product_at(
            context_of(request).tenant_id, entity_id, version=version, as_of=as_of
        )
        if view is None:
            raise NotFound(f"{self.r.label} not found at that version or time")
        return view

    async def update(
        self, request: AnyRequest, entity_id: str, product_id: str | None
    ) -> Response[Any]:
        ctx, services = context_of(request), services_of(request)
        pid = str(path_uuid(product_id, "product")) if product_id is not None else None
        eid = str(path_uuid(entity_id, self.r.label))
        expected = if_match_version(request)
        values, _ = _values(
            self.r, await request.body(), request.headers.get("content-type"), creating=False
        )
        command = UpdateEntity(ctx.actor, self.r.entity_type, eid, values, expected, pid)
        outcome, _ = await to_thread.run_sync(services.bus.handle, command)
        return respond(outcome.resource, HTTP_200_OK)

    async def delete(self, request: AnyRequest, entity_id: str, product_id: str | None) -> None:
        ctx, services = context_of(request), services_of(request)
        pid = str(path_uuid(product_id, "product")) if product_id is not None else None
        eid = str(path_uuid(entity_id, self.r.label))
        command = DeleteEntity(ctx.actor, self.r.entity_type, eid, if_match_version(request), pid)
        await to_thread.run_sync(services.bus.handle, command)


def _typed(fn: Any, returns: Any) -> Any:
    """Give a generated handler its real response type (for the OpenAPI document)."""
    fn.__annotations__["return"] = returns
    return fn


def _handlers(r: Resource, e: ResourceEndpoints) -> list[HTTPRouteHandler]:
    """The six routes of a resource; nested resources take the product id from the path."""
    body = body_of(r.input)
    one, many = Response[r.view], Response[list[r.view]]  # type: ignore[name-defined]
    label = r.label

    if r.nested_in_products:

        async def list_items(request: AnyRequest, product_id: str) -> Any:
            return await e.list(request, product_id)

        async def create_item(request: AnyRequest, product_id: str) -> Any:
            return await e.create(request, product_id)

        async def get_item(request: AnyRequest, product_id: str, entity_id: str) -> Any:
            return await e.get(request, entity_id, product_id)

        async def update_item(request: AnyRequest, product_id: str, entity_id: str) -> Any:
            return await e.update(request, entity_id, product_id)

        async def delete_item(request: AnyRequest, product_id: str, entity_id: str) -> None:
            await e.delete(request, entity_id, product_id)

    else:

        async def list_items(request: AnyRequest) -> Any:  # type: ignore[misc]
            return await e.list(request, None)

        async def create_item(request: AnyRequest) -> Any:  # type: ignore[misc]
            return await e.create(request, None)

        async def get_item(request: AnyRequest, entity_id: str) -> Any:  # type: ignore[misc]
            return await e.get(request, entity_id, None)

        async def update_item(request: AnyRequest, entity_id: str) -> Any:  # type: ignore[misc]
            return await e.update(request, entity_id, None)

        async def delete_item(request: AnyRequest, entity_id: str) -> None:  # type: ignore[misc]
            await e.delete(request, entity_id, None)

    by_id = "/{entity_id:str}"
    pascal = "".join(part.title() for part in r.entity_type.split("_"))
    return [
        get(
            "/",
            responses=READ_RESPONSES,
            summary=f"List {r.collection}",
            name=f"{r.entity_type}-list",
            operation_id=f"list{pascal}s",
        )(_typed(list_items, many)),
        post(
            "/",
            status_code=HTTP_201_CREATED,
            responses=WRITE_RESPONSES,
            summary=f"Create a {label}",
            operation_class=body,
            name=f"{r.entity_type}-create",
            operation_id=f"create{pascal}",
        )(_typed(create_item, one)),
        get(
            by_id,
            responses=READ_RESPONSES,
            summary=f"Get a {label}",
            name=f"{r.entity_type}-get",
            operation_id=f"get{pascal}",
        )(_typed(get_item, one)),
        put(
            by_id,
            responses=WRITE_RESPONSES,
            operation_class=body,
            summary=f"Update a {label} (JSON Merge Patch)",
            name=f"{r.entity_type}-put",
            operation_id=f"replace{pascal}",
        )(_typed(update_item, one)),
        patch(
            by_id,
            responses=WRITE_RESPONSES,
            operation_class=body,
            summary=f"Update a {label} (JSON Merge Patch)",
            name=f"{r.entity_type}-patch",
            operation_id=f"update{pascal}",
        )(_typed(update_item, one)),
        delete(
            by_id,
            status_code=HTTP_204_NO_CONTENT,
            responses=WRITE_RESPONSES,
            summary=f"Delete a {label}",
            name=f"{r.entity_type}-delete",
            operation_id=f"delete{pascal}",
        )(delete_item),
    ]


def router_for(resource: Resource) -> Router:
    endpoints = ResourceEndpoints(resource)
    path = (
        f"/products/{{product_id:str}}/{resource.collection}"
        if resource.nested_in_products
        else f"/{resource.collection}"
    )
    return Router(path=path, route_handlers=_handlers(resource, endpoints), tags=[resource.tag])


def routers(resources: Sequence[Resource]) -> list[Router]:
    return [router_for(r) for r in resources]
