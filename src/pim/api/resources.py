"""Every resource's HTTP behaviour from one mechanism: list (keyset cursor, limit, Link),
create (201, Location, ETag, Idempotency-Key via middleware), get, PUT/PATCH as JSON Merge
Patch with If-Match and no-op detection, DELETE (204). The routes of each resource type are
derived from its declaration (domain/resource.py); nothing here names a resource."""

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from anyio import to_thread
from litestar import Response, Router, delete, get, patch, post, put
from litestar.handlers import HTTPRouteHandler
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from pim.api import http
from pim.api.bodies import decode_body
from pim.api.openapi import READ_RESPONSES, WRITE_RESPONSES, body_of
from pim.api.parameters import plural, singular
from pim.api.problems import ApiError
from pim.commands.messages import CreateEntity, DeleteEntity, UpdateEntity, new_id
from pim.domain.errors import FieldError, NotFound
from pim.domain.product import Product
from pim.domain.registry import RESOURCE_BY_TYPE, RESOURCE_TYPES
from pim.domain.resource import READ_ONLY, ResourceType, provided_fields
from pim.queries.pages import InvalidQuery, Rendered, parse_limit, parse_natural
from pim.queries.products import datetime_param


def _values(
    resource: ResourceType, request_body: bytes, content_type: str | None, *, creating: bool
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


def _parent_collection(resource: ResourceType) -> str | None:
    return RESOURCE_BY_TYPE[resource.parent].collection if resource.parent else None


def _location(
    request: http.AnyRequest, resource: ResourceType, entity_id: object, parent_id: str | None
) -> str:
    parent = _parent_collection(resource)
    if parent is not None:
        return http.resource_url(request, f"{parent}/{parent_id}/{resource.collection}", entity_id)
    return http.resource_url(request, resource.collection, entity_id)


class ResourceEndpoints:
    """The behaviour, shared by every resource; the controllers below only bind routes."""

    def __init__(self, resource: ResourceType) -> None:
        self.r = resource

    def _parent_id(self, parent_id: str | None) -> str | None:
        if parent_id is None or self.r.parent is None:
            return None
        return str(http.path_uuid(parent_id, self.r.parent))

    async def _read(
        self, request: http.AnyRequest, entity_id: str, product_id: str | None
    ) -> Rendered:
        ctx = http.context_of(request)
        view: Rendered | None = (
            await http.reads_of(request)
            .resources[self.r.entity_type]
            .get_json(ctx.tenant_id, UUID(entity_id))
        )
        if view is None or (product_id is not None and view.product_id != product_id):
            raise NotFound(f"{self.r.label} not found")
        return view

    async def _check_parent(self, request: http.AnyRequest, parent_id: str | None) -> str | None:
        if parent_id is None or self.r.parent is None:
            return None
        pid = str(http.path_uuid(parent_id, self.r.parent))
        ctx = http.context_of(request)
        parents = http.reads_of(request).resources[self.r.parent]
        if await parents.get_json(ctx.tenant_id, UUID(pid)) is None:
            raise NotFound(f"{self.r.parent} not found")
        return pid

    async def list(self, request: http.AnyRequest, product_id: str | None) -> Response[Any]:
        pid = await self._check_parent(request, product_id)
        ctx = http.context_of(request)
        params = http.query_params(request)
        page, cursor = (
            await http.reads_of(request)
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
        return Response(
            page, media_type="application/json", headers=http.next_link(request, cursor)
        )

    async def create(self, request: http.AnyRequest, product_id: str | None) -> Response[Any]:
        ctx, services = http.context_of(request), http.services_of(request)
        pid = self._parent_id(product_id)
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
            answer=http.answer_for(request, HTTP_201_CREATED, Location=location),
        )
        outcome = await to_thread.run_sync(services.bus.handle, command)
        http.recorded(request, outcome.position)
        return http.respond_outcome(outcome, HTTP_201_CREATED, Location=location)

    async def get(
        self, request: http.AnyRequest, entity_id: str, product_id: str | None
    ) -> Response[Any]:
        pid = self._parent_id(product_id)
        eid = http.path_uuid(entity_id, self.r.label)
        params = http.query_params(request)
        if self.r.time_travel and ("version" in params or "as_of" in params):
            return http.respond(await self._past(request, eid, params), HTTP_200_OK)
        view = await self._read(request, str(eid), pid)
        return http.respond(view, HTTP_200_OK)

    async def _past(self, request: http.AnyRequest, entity_id: UUID, params: dict[str, str]) -> Any:
        """The resource as it was at ``?version=N`` or ``?as_of=<RFC 3339>`` (from the log)."""
        version = None
        if "version" in params and "as_of" in params:
            raise InvalidQuery("as_of", "cannot be combined with version; give one of them")
        if "version" in params:
            version = parse_natural(params["version"])
            if version is None or version < 1:
                raise InvalidQuery("version", "must be a positive integer")
        as_of = datetime_param("as_of", params["as_of"]) if "as_of" in params else None
        view = await http.reads_of(request).history.product_at(
            http.context_of(request).tenant_id, entity_id, version=version, as_of=as_of
        )
        if view is None:
            raise NotFound(f"{self.r.label} not found at that version or time")
        return view

    async def update(
        self, request: http.AnyRequest, entity_id: str, product_id: str | None
    ) -> Response[Any]:
        ctx, services = http.context_of(request), http.services_of(request)
        pid = self._parent_id(product_id)
        eid = str(http.path_uuid(entity_id, self.r.label))
        expected = http.if_match_version(request)
        values, _ = _values(
            self.r, await request.body(), request.headers.get("content-type"), creating=False
        )
        command = UpdateEntity(ctx.actor, self.r.entity_type, eid, values, expected, pid)
        outcome = await to_thread.run_sync(services.bus.handle, command)
        return http.respond_outcome(outcome, HTTP_200_OK)

    async def delete(
        self, request: http.AnyRequest, entity_id: str, product_id: str | None
    ) -> None:
        ctx, services = http.context_of(request), http.services_of(request)
        pid = self._parent_id(product_id)
        eid = str(http.path_uuid(entity_id, self.r.label))
        command = DeleteEntity(
            ctx.actor, self.r.entity_type, eid, http.if_match_version(request), pid
        )
        await to_thread.run_sync(services.bus.handle, command)


def _typed(fn: Any, returns: Any) -> Any:
    """Give a generated handler its real response type (for the OpenAPI document)."""
    fn.__annotations__["return"] = returns
    return fn


def _handlers(r: ResourceType, e: ResourceEndpoints) -> list[HTTPRouteHandler]:
    """The six routes of a resource; nested resources take the product id from the path."""
    body = body_of(r.input)
    one, many = Response[r.view], Response[list[r.view]]  # type: ignore[name-defined]
    label = r.label

    if r.parent is not None:
        # Resources nest under products (the only parent type): the path names product_id.
        assert r.parent == Product.entity_type, r

        async def list_items(request: http.AnyRequest, product_id: str) -> Any:
            return await e.list(request, product_id)

        async def create_item(request: http.AnyRequest, product_id: str) -> Any:
            return await e.create(request, product_id)

        async def get_item(request: http.AnyRequest, product_id: str, entity_id: str) -> Any:
            return await e.get(request, entity_id, product_id)

        async def update_item(request: http.AnyRequest, product_id: str, entity_id: str) -> Any:
            return await e.update(request, entity_id, product_id)

        async def delete_item(request: http.AnyRequest, product_id: str, entity_id: str) -> None:
            await e.delete(request, entity_id, product_id)

    else:

        async def list_items(request: http.AnyRequest) -> Any:  # type: ignore[misc]
            return await e.list(request, None)

        async def create_item(request: http.AnyRequest) -> Any:  # type: ignore[misc]
            return await e.create(request, None)

        async def get_item(request: http.AnyRequest, entity_id: str) -> Any:  # type: ignore[misc]
            return await e.get(request, entity_id, None)

        async def update_item(request: http.AnyRequest, entity_id: str) -> Any:  # type: ignore[misc]
            return await e.update(request, entity_id, None)

        async def delete_item(request: http.AnyRequest, entity_id: str) -> None:  # type: ignore[misc]
            await e.delete(request, entity_id, None)

    by_id = "/{entity_id:str}"
    one_name, many_name = singular(r), plural(r)
    a_label = f"{'an' if label[0] in 'aeiou' else 'a'} {label}"
    # (decorator, path, status, name, operationId, summary, handler, response type, body)
    routes: list[tuple[Any, str, int, str, str, str, Any, Any, Any]] = [
        (get, "/", HTTP_200_OK, "list", f"list{many_name}",
         f"List {r.collection.replace('-', ' ')}, {'by sort_order' if r.ordered else 'oldest first'}", list_items, many, None),
        (post, "/", HTTP_201_CREATED, "create", f"create{one_name}", f"Create {a_label}",
         create_item, one, body),
        (get, by_id, HTTP_200_OK, "get", f"get{one_name}", f"Get {a_label}", get_item, one,
         None),
        (put, by_id, HTTP_200_OK, "put", f"replace{one_name}",
         f"Update {a_label} (PUT, as JSON Merge Patch)", update_item, one, body),
        (patch, by_id, HTTP_200_OK, "patch", f"update{one_name}",
         f"Update {a_label} (PATCH, JSON Merge Patch)", update_item, one, body),
        (delete, by_id, HTTP_204_NO_CONTENT, "delete", f"delete{one_name}",
         f"Delete {a_label}", delete_item, None, None),
    ]  # fmt: skip
    return [
        decorator(
            path,
            status_code=status,
            responses=READ_RESPONSES if decorator is get else WRITE_RESPONSES,
            summary=summary,
            name=f"{r.entity_type}-{name}",
            operation_id=operation_id,
            **({"operation_class": operation} if operation is not None else {}),
        )(handler if returns is None else _typed(handler, returns))
        for decorator, path, status, name, operation_id, summary, handler, returns, operation in (
            routes
        )
    ]


def router_for(resource: ResourceType) -> Router:
    endpoints = ResourceEndpoints(resource)
    parent = _parent_collection(resource)
    path = (
        f"/{parent}/{{product_id:str}}/{resource.collection}"
        if parent is not None
        else f"/{resource.collection}"
    )
    return Router(path=path, route_handlers=_handlers(resource, endpoints), tags=[resource.tag])


def routers(resources: Sequence[ResourceType] = RESOURCE_TYPES) -> list[Router]:
    """One router per declared resource type."""
    return [router_for(r) for r in resources]
