"""Field errors from msgspec's validation messages: one stable code per kind of problem and
the field's path (``variants[0].sku``), so every decoder (request bodies, job payloads, import
items) names a field the same way."""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec

from pim.domain.errors import FieldError, ValidationFailed

T = TypeVar("T")

_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_FIELD_NAME = re.compile(r"field `(?P<name>[^`]+)`")


def _join(path: str, name: str | None) -> str:
    # msgspec names a map's value "[...]" without its key: the map is the field then
    path = path.replace("[...]", "").lstrip(".")
    if name is None:
        return path or "body"
    return f"{path}.{name}" if path else name


def field_error_from_msgspec(message: str) -> FieldError:
    """Map a msgspec validation message to a field error with a stable code."""
    match = _AT.search(message)
    path = match.group("path") if match else ""
    text = message[: match.start()] if match else message
    named = _FIELD_NAME.search(text)
    if text.startswith("Object contains unknown field"):
        return FieldError(
            _join(path, named and named.group("name")), "unknown_field", "is not a known field"
        )
    if text.startswith("Object missing required field"):
        return FieldError(_join(path, named and named.group("name")), "required", "is required")
    field = _join(path, None)
    if "of length <=" in text:
        return FieldError(field, "too_long", text[0].lower() + text[1:])
    if "of length >=" in text:
        return FieldError(field, "too_short", text[0].lower() + text[1:])
    if text.startswith("Invalid enum value"):
        return FieldError(field, "invalid_choice", text[0].lower() + text[1:])
    if text.startswith(
        (
            "Expected `int` >",
            "Expected `int` <",
            "Expected `float` >",
            "Expected `float` <",
            "Expected `number` >",
            "Expected `number` <",
            "Number out of range",
            "Expected `array` of length",
        )
    ):
        return FieldError(field, "out_of_range", text[0].lower() + text[1:])
    if text.startswith("Expected"):
        return FieldError(field, "invalid_type", text[0].lower() + text[1:])
    return FieldError(field, "invalid_format", text[0].lower() + text[1:])


def convert_strict(data: object, type_: type[T], *, prefix: str = "") -> T:
    """``data`` (decoded JSON) as ``type_``, strictly typed; ValidationFailed naming the field
    (under ``prefix``, e.g. ``payload``) when it does not fit."""
    try:
        return msgspec.convert(data, type_, strict=True)
    except msgspec.ValidationError as exc:
        error = field_error_from_msgspec(str(exc))
        if prefix:
            name = f"{prefix}.{error.field}" if error.field != "body" else prefix
        else:
            name = error.field
        raise ValidationFailed([FieldError(name, error.code, error.message)]) from None
