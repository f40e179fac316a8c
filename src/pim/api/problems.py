"""The one place that turns errors into RFC 9457 problem details (application/problem+json)."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import msgspec
import redis.exceptions
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.types import ExceptionHandlersMap

from pim.domain.errors import (
    Conflict,
    DomainError,
    FieldError,
    NotFound,
    PreconditionFailed,
    ValidationFailed,
)
from pim.infra.database import UNAVAILABLE_ERRORS
from pim.infra.idempotency import ClaimLost
from pim.queries.pages import InvalidQuery

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://pim.dev/problems/"


class FieldProblem(msgspec.Struct):
    field: str
    code: str
    message: str


class Problem(msgspec.Struct, omit_defaults=True):
    """RFC 9457 problem details; ``error`` repeats ``detail`` for clients of the older
    ``{"error": "..."}`` shape, ``errors`` names each offending field."""

    type: str
    title: str
    status: int
    detail: str
    error: str
    errors: list[FieldProblem] | None = None


class ApiError(Exception):
    """An HTTP-level failure raised by the API layer itself (headers, query, body)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug
        self.errors = errors
        self.headers = headers or {}


def problem_response(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[bytes]:
    title = HTTPStatus(status).phrase
    slug = slug or title.lower().replace(" ", "-").replace("'", "")
    body = Problem(
        type=f"{PROBLEM_BASE}{slug}",
        title=title,
        status=status,
        detail=detail,
        error=detail,
        errors=[FieldProblem(e.field, e.code, e.message) for e in errors] if errors else None,
    )
    return Response(
        content=msgspec.json.encode(body),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def _api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[bytes]:
    return problem_response(
        exc.status, exc.detail, slug=exc.slug, errors=exc.errors, headers=exc.headers
    )


def _domain_error(_: Request[Any, Any, Any], exc: DomainError) -> Response[bytes]:
    if isinstance(exc, ValidationFailed):
        return problem_response(422, exc.detail, slug="validation-error", errors=exc.errors)
    if isinstance(exc, NotFound):
        return problem_response(404, exc.detail)
    if isinstance(exc, Conflict):
        errors = [FieldError(exc.field, "conflict", exc.detail)] if exc.field else None
        return problem_response(409, exc.detail, errors=errors)
    if isinstance(exc, PreconditionFailed):
        return problem_response(412, exc.detail)
    return problem_response(400, exc.detail)


def _invalid_query(_: Request[Any, Any, Any], exc: InvalidQuery) -> Response[bytes]:
    return problem_response(
        400,
        f"query parameter '{exc.parameter}' {exc.message}",
        slug="invalid-query-parameter",
        errors=[FieldError(exc.parameter, "invalid_parameter", exc.message)],
    )


def _http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    detail = (
        exc.detail
        if exc.detail and exc.detail != HTTPStatus(status).phrase
        else {
            404: "no such resource",
            405: "method not allowed on this resource",
            413: "request body exceeds the 10 MiB limit",
        }.get(status, HTTPStatus(status).phrase)
    )
    headers = dict(exc.headers or {})
    if isinstance(exc, NotAuthorizedException) or status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    if status >= 500:
        log.error("HTTP %s: %s", status, exc.detail)
        detail = "internal error"
    return problem_response(status, str(detail), headers=headers)


# Seconds a client should wait before retrying while a dependency is unavailable.
RETRY_AFTER_S = 2


def _unavailable(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """A dependency (PostgreSQL, Redis) is down or a wait for it timed out. The client may
    retry: with its Idempotency-Key, a write that did commit before the failure is replayed,
    never made twice."""
    log.warning("%s %s: dependency unavailable: %s", request.method, request.url.path, exc)
    return problem_response(
        503,
        "a service this request needs is unavailable; retry shortly",
        slug="service-unavailable",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def _claim_lost(_: Request[Any, Any, Any], exc: ClaimLost) -> Response[bytes]:
    return problem_response(
        409,
        "another request took over this Idempotency-Key; nothing was written",
        slug="idempotency-key-in-flight",
    )


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        500, "internal error; the request was not completed", slug="internal-error"
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ApiError: _api_error,
    DomainError: _domain_error,
    InvalidQuery: _invalid_query,
    HTTPException: _http_exception,
    ClaimLost: _claim_lost,
    # Outages: PostgreSQL (also through eventsourcing and the pools) or Redis.
    **dict.fromkeys(UNAVAILABLE_ERRORS, _unavailable),
    redis.exceptions.ConnectionError: _unavailable,
    redis.exceptions.TimeoutError: _unavailable,
    Exception: _unexpected,
}
