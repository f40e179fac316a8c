"""Domain errors: named failures the API layer maps to HTTP problems in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """One rejected field: ``field`` is a path such as ``variants[0].sku``."""

    field: str
    code: str
    message: str


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ValidationFailed(DomainError):
    """Input breaks a rule; carries one entry per offending field."""

    def __init__(self, errors: list[FieldError], detail: str | None = None) -> None:
        super().__init__(detail or "; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors


class NotFound(DomainError):
    """The resource does not exist for this tenant (or never existed at all)."""


class Conflict(DomainError):
    """A unique key is taken, or the resource's state forbids the change. ``field`` names the
    field whose value is taken (a path such as ``variants[1].sku``), when one is to blame."""

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.field = field


class PreconditionFailed(DomainError):
    """The client pinned a version (If-Match) that is no longer current."""


def field_errors(*errors: FieldError) -> ValidationFailed:
    return ValidationFailed(list(errors))
