"""Decoding request bodies at the edge: strict JSON into msgspec Structs, with every failure
turned into a problem that names the field (``variants[0].sku``)."""

from __future__ import annotations

import itertools
from typing import Any, TypeVar

import msgspec

from pim.api.problems import ApiError
from pim.domain.decoding import field_error_from_msgspec
from pim.domain.errors import FieldError

T = TypeVar("T")

MAX_BODY_BYTES = 10 * 1024 * 1024
# At most this many field errors in one 422 (the members after are not looked at).
MAX_FIELD_ERRORS = 50


def is_json_media_type(content_type: str | None) -> bool:
    if not content_type:
        return True  # lenient: a bare body is read as JSON
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def decode_body(
    body: bytes, content_type: str | None, type_: type[T], *, required: bool = True
) -> T | None:
    """Decode a JSON body strictly (no type coercion, unknown fields rejected)."""
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, "request body exceeds the 10 MiB limit")
    if not body.strip():
        if required:
            raise ApiError(400, "request body must be a JSON object", slug="malformed-json")
        return None
    if not is_json_media_type(content_type):
        raise ApiError(
            415,
            f"content type '{content_type}' is not supported; send application/json",
            slug="unsupported-media-type",
        )
    try:
        decoded = msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as exc:
        # Typed decoding stops at the first wrong type; malformed JSON must still be a 400.
        document: Any = None
        try:
            document = msgspec.json.decode(body)
        except msgspec.ValidationError:
            pass  # well-formed, with a value out of range (1e400): the typed error says where
        except msgspec.DecodeError as syntax:
            raise ApiError(
                400, f"request body is not valid JSON: {syntax}", slug="malformed-json"
            ) from None
        except UnicodeDecodeError:
            raise _not_utf8() from None
        except RecursionError:
            raise _too_deep() from None
        errors = _every_field_error(document, type_, field_error_from_msgspec(str(exc)))
        raise ApiError(
            422,
            "; ".join(f"{e.field}: {e.message}" for e in errors),
            slug="validation-error",
            errors=errors,
        ) from None
    except msgspec.DecodeError as exc:
        raise ApiError(
            400, f"request body is not valid JSON: {exc}", slug="malformed-json"
        ) from None
    except UnicodeDecodeError:
        raise _not_utf8() from None
    except RecursionError:
        raise _too_deep() from None
    # JSON spells NUL only as this escape; only then is the (rare) walk needed.
    if b"\\u0000" in body:
        field = first_nul(msgspec.json.decode(body))
        if field is not None:
            error = FieldError(
                field, "invalid_character", "must not contain the NUL character (U+0000)"
            )
            raise ApiError(
                422, f"{field}: {error.message}", slug="validation-error", errors=[error]
            )
    return decoded


def _every_field_error(document: Any, type_: type[Any], first: FieldError) -> list[FieldError]:
    """msgspec stops at the first wrong field; a client fixing its request wants them all.
    ``document`` is the body read without types (None when even that failed, e.g. 1e400:
    the first error says it all). Each top-level member is converted on its own (every input
    field is optional, so alone it can only fail on itself), and the errors naming that
    member are kept. Costs nothing unless the body was already refused."""
    errors = [first]
    if not isinstance(document, dict) or not hasattr(type_, "__struct_fields__"):
        return errors
    seen = {first.field}
    # Bounded: a body of 40,000 unknown keys must not hold the event loop (or the answer).
    for key, value in itertools.islice(document.items(), MAX_FIELD_ERRORS * 2):
        if len(errors) >= MAX_FIELD_ERRORS:
            break
        try:
            msgspec.convert({key: value}, type_, strict=True)
        except RecursionError:
            continue
        except msgspec.ValidationError as exc:
            error = field_error_from_msgspec(str(exc))
            names_key = error.field == key or error.field.startswith((f"{key}.", f"{key}["))
            if names_key and error.field not in seen:
                seen.add(error.field)
                errors.append(error)
    return errors


def first_nul(document: Any) -> str | None:
    """The path of the first key or string holding U+0000, which PostgreSQL text and jsonb
    cannot store (a NUL in a key is shown as U+FFFD in the path)."""
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return path or "body"
        elif isinstance(value, dict):
            for key, item in value.items():
                child = f"{path}.{key}" if path else str(key)
                if "\x00" in str(key):
                    return child.replace("\x00", "\ufffd")
                stack.append((child, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
    return None


def _not_utf8() -> ApiError:
    return ApiError(400, "request body is not valid UTF-8 JSON", slug="malformed-json")


def _too_deep() -> ApiError:
    """msgspec decodes nested arrays/objects recursively: a body nested ~1,000 levels deep
    (a few KB) exhausts the interpreter's recursion limit. No catalog document nests so deep."""
    return ApiError(400, "request body is nested too deeply to be read", slug="malformed-json")
