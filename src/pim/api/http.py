"""Small HTTP helpers shared by every controller: context, ids, versions, links."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import msgspec
from litestar import Request, Response

from pim.api.idempotency import claim_of, mark_recorded
from pim.api.identity import RequestContext
from pim.api.problems import ApiError
from pim.api.reads import ReadSide
from pim.commands.bus import Outcome
from pim.commands.messages import Answer
from pim.domain.errors import NotFound, PreconditionFailed
from pim.infra.idempotency import Receipt
from pim.queries.pages import InvalidQuery, Rendered, parse_natural
from pim.services import Services

API_PREFIX = "/api/v1/pim"

AnyRequest = Request[Any, Any, Any]


def context_of(request: AnyRequest) -> RequestContext:
    context = request.scope.get("user")
    if not isinstance(context, RequestContext):  # pragma: no cover - middleware guarantees it
        raise ApiError(401, "authentication required", headers={"WWW-Authenticate": "Bearer"})
    return context


def services_of(request: AnyRequest) -> Services:
    services: Services = request.app.state.services
    return services


def reads_of(request: AnyRequest) -> ReadSide:
    reads: ReadSide = request.app.state.reads
    return reads


def path_uuid(value: str, entity_type: str) -> UUID:
    """A non-UUID id in a path is simply a resource that does not exist (404)."""
    try:
        return UUID(value)
    except ValueError:
        raise NotFound(f"{entity_type} not found") from None


def if_match_version(request: AnyRequest) -> int | None:
    """The version pinned by ``If-Match: "<version>"`` (None when absent or ``*``)."""
    raw = request.headers.get("if-match")
    if raw is None or raw.strip() == "*":
        return None
    value = raw.strip()
    weak = value.startswith("W/")
    version = parse_natural(value.removeprefix("W/").strip('"'))
    if version is None:
        raise ApiError(400, 'If-Match must be an entity tag such as "3"', slug="invalid-header")
    if weak:
        # If-Match compares strongly (RFC 9110 13.1.1): a weak tag never matches.
        raise PreconditionFailed("If-Match needs a strong entity tag (ours are never weak)")
    return version


def etag(version: int) -> str:
    return f'"{version}"'


def resource_url(request: AnyRequest, collection: str, entity_id: object) -> str:
    return f"{str(request.base_url).rstrip('/')}{API_PREFIX}/{collection}/{entity_id}"


def next_link(request: AnyRequest, cursor: str | None) -> dict[str, str]:
    if cursor is None:
        return {}
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
    params.append(("cursor", cursor))
    url = f"{str(request.base_url).rstrip('/')}{request.url.path}?{urlencode(params)}"
    return {"Link": f'<{url}>; rel="next"'}


def query_params(request: AnyRequest) -> dict[str, str]:
    """Single-valued query parameters (the last value wins). A NUL character (``%00``) is
    refused here, for every route: PostgreSQL text cannot hold it."""
    params = dict(request.query_params.items())
    for name, value in params.items():
        if "\x00" in name or "\x00" in value:
            raise InvalidQuery(name.replace("\x00", ""), "must not contain the NUL character")
    return params


_encode_json = msgspec.json.Encoder().encode


def answer_for(request: AnyRequest, status: int, **headers: str) -> Answer | None:
    """How a write made by this request answers, if it carries an Idempotency-Key: the
    write's transaction records it (``respond`` sends the same bytes)."""
    claim = claim_of(request.scope)
    if claim is None:
        return None
    extra = [[name.lower(), value] for name, value in headers.items()]

    def answer(resource: dict[str, Any]) -> Receipt:
        return Receipt(
            claim,
            status,
            [["content-type", "application/json"], ["etag", etag(resource["version"])], *extra],
            _encode_json(resource),
        )

    return answer


def recorded(request: AnyRequest, position: int | None) -> None:
    """The request's write (if it wrote: ``position``) recorded its answer."""
    if position is not None and claim_of(request.scope) is not None:
        mark_recorded(request.scope)


# On a write's answer when the read models did not reflect the write in time (a backlog):
# the answer is the resource as the write left it, but a list or read made at once may not
# show it yet.
VIEWS_BEHIND_HEADER = "X-PIM-Views-Behind"


def respond_outcome(outcome: Outcome, status: int, **headers: str) -> Response[Any]:
    """A write's answer: the resource as the command left it, with the views-behind header
    when the read models do not reflect it yet."""
    if not outcome.visible:
        headers = {**headers, VIEWS_BEHIND_HEADER: "true"}
    return respond(outcome.resource, status, **headers)


def respond(view: Any, status: int, **headers: str) -> Response[Any]:
    """A resource: a read model struct, a body PostgreSQL already rendered, or the resource a
    command left (a dict, as its read model shows it)."""
    if isinstance(view, Rendered):
        return Response(
            view.body,
            status_code=status,
            media_type="application/json",
            headers={"ETag": etag(view.version), **headers},
        )
    if isinstance(view, dict):
        return Response(
            _encode_json(view),
            status_code=status,
            media_type="application/json",
            headers={"ETag": etag(view["version"]), **headers},
        )
    return Response(view, status_code=status, headers={"ETag": etag(view.version), **headers})
