"""What can be stored: checks on ids, text, and metadata shared by the models and the store.

Every check names the field it rejects and says why (InvalidInputError); none needs a database.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any

from pydantic_core import from_json, to_json

from sqlsessions.errors import InvalidInputError

MAX_SESSION_ID_LENGTH = 255
"""The longest session id accepted, in characters."""

MAX_KIND_LENGTH = 32
"""The longest message kind accepted, in characters."""

CHAT_KIND = "message"
"""The kind of a chat message; any other kind is a framework item the analytics views skip."""


_canonical_json = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False).encode


def json_text(value: Any) -> str:
    """JSON as sqlsessions stores it: compact, keys sorted, so equal values are equal text."""
    return _canonical_json(value)


def jsonb_text(value: Any) -> str:
    """JSON text for a JSONB column or document. A float that is a whole number is never
    written in exponent form (1e+16 becomes 10000000000000000.0): JSONB keeps numbers as
    NUMERIC, which would drop the exponent form's only sign that the number was a float.
    Keys stay in the order given (JSONB has its own); written by pydantic-core, in a fifth
    of the json module's time for a framework item. For JSON values only (what the models
    and their checks let through)."""
    text = to_json(value)
    if b"e+" in text or b"E+" in text:  # a whole float in exponent form: rewrite it
        return _numeric_safe(value)
    return text.decode()


def _numeric_safe(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and "e" in repr(value):
        return format(value, ".1f")
    if isinstance(value, dict):
        inner = ",".join(
            f"{json_text(key)}:{_numeric_safe(item)}" for key, item in sorted(value.items())
        )
        return "{" + inner + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_numeric_safe(item) for item in value) + "]"
    return json_text(value)


def json_copy(value: Any) -> Any:
    """A deep copy of a JSON value made of fresh dicts and lists (tuples become lists)."""
    if isinstance(value, dict):
        return {key: json_copy(inner) for key, inner in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_copy(inner) for inner in value]
    return value


MAX_JSON_DEPTH = 100
"""How deeply a metadata value may nest arrays and objects (``[[1]]`` is 2 levels deep).

Deeper values are rejected up front: every path that reads them back (``to_json``, pydantic's
JSON parser, the drivers, ``sqlsessions export``) has a recursion limit of its own, and a
value that saves but cannot be read back would block every export of the database."""


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored as PostgreSQL text, or None when it can."""
    if "\x00" in value:
        return "contains a NUL character (\\x00), which PostgreSQL text cannot store"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8 (it contains a lone surrogate)"
    return None


def _too_deep(value: Any) -> bool:
    """Whether `value` nests arrays/objects more than MAX_JSON_DEPTH levels (or is circular)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth == MAX_JSON_DEPTH:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def json_value_problem(value: Any) -> str | None:
    """Why `value` is not a JSON value that round-trips and fits in PostgreSQL, or None."""
    if _too_deep(value):
        return f"is nested more than {MAX_JSON_DEPTH} levels deep (arrays and objects)"
    try:
        json.dumps(value, allow_nan=False)
    except TypeError as exc:
        return f"is not JSON-serialisable: {exc}"
    except ValueError as exc:
        if "Out of range float" in str(exc):
            return "contains NaN or Infinity, which JSON cannot represent"
        return f"is not a JSON value: {exc}"
    except RecursionError:
        return "is nested too deeply to be written as JSON"
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem is not None:
                return f"holds a string that {problem}"
        elif isinstance(item, dict):
            for key, inner in item.items():
                if not isinstance(key, str):
                    return f"holds an object key that is not a string: {key!r}"
                stack.append(key)
                stack.append(inner)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return None


_NON_FINITE = re.compile(rb"[:,\[]-?(?:NaN|Infinity)")
"""NaN or an infinity as pydantic-core writes a float that is not finite (never valid JSON)."""


def valid_json_copy(value: Any) -> Any | None:
    """A fresh copy of `value` (plain dicts and lists) when checks at native speed prove that
    `json_value_problem` would find nothing; None when they cannot (then walk it: tuples,
    non-string keys, a NUL, a lone surrogate, NaN, deep nesting, other types all land
    there). A framework item is checked on every append, and the walk costs ~30 us per
    small item. pydantic-core writes and reads the copy's JSON in about a third of the
    time the json module takes; whatever it writes that is not plain JSON (another type,
    NaN) fails the final comparison or the text checks."""
    try:
        text = to_json(value)
    except Exception:  # a lone surrogate, an unknown type, a cycle: let the walk say
        return None
    # Each level of nesting opens a bracket: fewer brackets than the limit, not too deep.
    if (
        b"\\u0000" in text
        or ((b"NaN" in text or b"Infinity" in text) and _NON_FINITE.search(text))
        or text.count(b"[") + text.count(b"{") >= MAX_JSON_DEPTH
    ):
        return None
    copy = from_json(text)
    return copy if copy == value else None  # a key that was not a string, a tuple, ...


def metadata_problem(key: Any, value: Any) -> tuple[str, str] | None:
    """(field, reason) when a metadata entry is not valid, else None."""
    if not isinstance(key, str):
        return "metadata key", f"must be a string, not {type(key).__name__}"
    if not key:
        return "metadata key", "must not be empty"
    problem = text_problem(key)
    if problem is not None:
        return "metadata key", problem
    problem = json_value_problem(value)
    if problem is not None:
        return f"metadata[{key}]", problem
    return None


def check_text(value: Any, field: str, max_length: int | None = None) -> str:
    """`value` if it is a string PostgreSQL can store (and not too long), else InvalidInputError."""
    if not isinstance(value, str):
        raise InvalidInputError(field, f"must be a string, not {type(value).__name__}")
    if max_length is not None and len(value) > max_length:
        raise InvalidInputError(field, f"is longer than {max_length} characters ({len(value)})")
    problem = text_problem(value)
    if problem is not None:
        raise InvalidInputError(field, problem)
    return value


def check_metadata_entry(key: Any, value: Any) -> None:
    """Raise InvalidInputError (naming the key) unless `key: value` is valid metadata."""
    problem = metadata_problem(key, value)
    if problem is not None:
        raise InvalidInputError(*problem)


def check_timestamp(value: Any, field: str) -> datetime:
    """`value` if it is a datetime that can be expressed in UTC, else InvalidInputError
    (an aware datetime at the edge of the calendar overflows when converted)."""
    if not isinstance(value, datetime):
        raise InvalidInputError(field, "must be a datetime")
    if value.tzinfo is not None:
        try:
            value.astimezone(timezone.utc)
        except (OverflowError, ValueError):
            raise InvalidInputError(field, "is out of range once converted to UTC") from None
    return value


def check_owner(value: Any, field: str = "owner") -> str:
    """`value` if it is a valid owner (like a session id, but '' is allowed: the default
    owner), else InvalidInputError naming `field`."""
    if not isinstance(value, str):
        raise InvalidInputError(field, f"must be a string, not {type(value).__name__}")
    return check_session_id(value, field) if value else value


def check_session_id(value: Any, field: str = "session_id") -> str:
    """`value` if it is a valid session id, else InvalidInputError naming `field`."""
    if not isinstance(value, str):
        raise InvalidInputError(field, f"must be a string, not {type(value).__name__}")
    if not value:
        raise InvalidInputError(field, "must not be empty")
    if len(value) > MAX_SESSION_ID_LENGTH:
        raise InvalidInputError(
            field, f"is longer than {MAX_SESSION_ID_LENGTH} characters ({len(value)})"
        )
    problem = text_problem(value)
    if problem is not None:
        raise InvalidInputError(field, problem)
    return value
