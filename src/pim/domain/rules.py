"""Reusable field rules: each returns the normalised value or raises a named field error."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from pim.domain.errors import FieldError, ValidationFailed

SLUG_PATTERN = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
ATTRIBUTE_KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class FieldErrors:
    """Collects field errors so one response names every bad field at once."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.errors: list[FieldError] = []

    def add(self, field: str, code: str, message: str) -> None:
        path = f"{self.prefix}{field}" if not self.prefix else f"{self.prefix}.{field}"
        self.errors.append(FieldError(path, code, message))

    def raise_if_any(self) -> None:
        if self.errors:
            raise ValidationFailed(self.errors)


def has_control_characters(value: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in value)


def text(
    errors: FieldErrors,
    field: str,
    value: Any,
    *,
    min_length: int = 0,
    max_length: int,
    trim: bool = False,
    single_line: bool = False,
) -> str | None:
    if not isinstance(value, str):
        errors.add(field, "invalid_type", "must be a string")
        return None
    if trim:
        value = value.strip()
    if len(value) < min_length:
        if min_length == 1:
            errors.add(field, "required", "must not be empty")
        else:
            errors.add(field, "too_short", f"must be at least {min_length} characters")
        return None
    if len(value) > max_length:
        errors.add(field, "too_long", f"must be at most {max_length} characters")
        return None
    if single_line and has_control_characters(value):
        errors.add(field, "invalid_format", "must not contain control characters")
        return None
    result: str = value
    return result


def slug(errors: FieldErrors, field: str, value: Any) -> str | None:
    if not isinstance(value, str) or not SLUG_PATTERN.match(value) or len(value) > 255:
        errors.add(
            field,
            "invalid_format",
            "must be a slug: lowercase letters and digits separated by single hyphens",
        )
        return None
    return value


def one_of(errors: FieldErrors, field: str, value: Any, choices: tuple[str, ...]) -> str | None:
    if value not in choices:
        errors.add(field, "invalid_choice", f"must be one of {', '.join(choices)}")
        return None
    return str(value)


URL_MAX = 2048


def http_url(errors: FieldErrors, field: str, value: Any) -> str | None:
    """An absolute http(s) URL with a host."""
    if not isinstance(value, str) or len(value) > URL_MAX or has_control_characters(value):
        errors.add(field, "invalid_format", f"must be an http(s) URL of at most {URL_MAX} chars")
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        errors.add(field, "invalid_format", "must be an absolute http or https URL")
        return None
    return value


def reference(errors: FieldErrors, field: str, value: Any) -> str | None:
    """A UUID reference, canonical string form."""
    try:
        return str(UUID(str(value)))
    except ValueError:
        errors.add(field, "invalid_format", "must be a UUID")
        return None


def reference_list(errors: FieldErrors, field: str, value: Any) -> list[str] | None:
    if not isinstance(value, list):
        errors.add(field, "invalid_type", "must be an array of ids")
        return None
    out: list[str] = []
    for index, item in enumerate(value):
        ref = reference(errors, f"{field}[{index}]", item)
        if ref is None:
            continue
        if ref in out:
            errors.add(f"{field}[{index}]", "duplicate", "is listed twice")
            continue
        out.append(ref)
    return out


def slugify(value: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:255]


def keyify(value: str) -> str:
    """A key (``^[a-z][a-z0-9_]{0,63}$``) from a name, or "" when none can be made."""
    ascii_text = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    key = re.sub(r"[^a-z0-9]+", "_", ascii_text.lower()).strip("_")[:64].rstrip("_")
    return key if key[:1].isalpha() else ""


NAME_MAX = 255
DESCRIPTION_MAX = 10_000


def name_field(
    errors: FieldErrors,
    values: Mapping[str, Any],
    out: dict[str, Any],
    *,
    current: Mapping[str, Any] | None,
) -> None:
    """``name``: required on create, never null, trimmed, one line, 1-255 characters."""
    if "name" in values:
        if values["name"] is None:
            errors.add("name", "required", "is required")
        else:
            out["name"] = text(
                errors,
                "name",
                values["name"],
                min_length=1,
                max_length=NAME_MAX,
                trim=True,
                single_line=True,
            )
    elif current is None:
        errors.add("name", "required", "is required")


def optional_field(
    errors: FieldErrors,
    values: Mapping[str, Any],
    out: dict[str, Any],
    field: str,
    parse: Callable[[FieldErrors, str, Any], Any],
) -> None:
    """An optional field, when sent: null clears it, anything else is ``parse``d."""
    if field in values:
        value = values[field]
        out[field] = None if value is None else parse(errors, field, value)


def optional_text_field(
    errors: FieldErrors,
    values: Mapping[str, Any],
    out: dict[str, Any],
    field: str,
    *,
    max_length: int = DESCRIPTION_MAX,
) -> None:
    """An optional text field: null clears it."""
    optional_field(errors, values, out, field, lambda e, f, v: text(e, f, v, max_length=max_length))
