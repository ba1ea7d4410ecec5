"""What each session tool is: its name, description, JSON Schema and argument checks.

Descriptions and schemas name the scope the tools act in, so a model knows whose sessions
it is looking at. Arguments are checked here against the same schema the model is shown.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from sqlsessions.queries import MAX_CURSOR_LENGTH
from sqlsessions.validation import MAX_SESSION_ID_LENGTH, json_text

DEFAULT_HISTORY_LIMIT = 50
MAX_HISTORY_LIMIT = 500
"""The most messages one `sessions_history` call returns; larger limits are clamped to it."""
DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 100
"""The most sessions one `sessions_list` page holds; larger limits are clamped to it."""
MAX_METADATA_KEY_LENGTH = 255
MAX_METADATA_VALUE_LENGTH = 65_536
"""The longest metadata value a model may set, in characters of its JSON text."""

TOOL_ORDER = (
    "sessions_list",
    "sessions_history",
    "sessions_get",
    "sessions_clear",
    "sessions_delete",
    "sessions_metadata_set",
    "sessions_metadata_get",
)
"""Every tool, in the Go package's order (the order tools are offered in)."""
ALL_TOOLS = frozenset(TOOL_ORDER)
READ_TOOLS = frozenset(
    {"sessions_list", "sessions_history", "sessions_get", "sessions_metadata_get"}
)
DESTRUCTIVE_TOOLS = frozenset({"sessions_clear", "sessions_delete"})
DEFAULT_TOOLS = READ_TOOLS | {"sessions_metadata_set"}


class BadArguments(Exception):
    """A tool argument is missing, unknown or has the wrong type (becomes an error result)."""


def describe_scope(owner: str, agent_id: str | None) -> str:
    """The sessions a scope holds, in words a model reads ("the sessions of agent ...")."""
    if agent_id is not None and owner:
        return f"the sessions of agent {json.dumps(agent_id)} of owner {json.dumps(owner)}"
    if agent_id is not None:
        return f"the sessions of agent {json.dumps(agent_id)}"
    if owner:
        return f"the sessions of owner {json.dumps(owner)}"
    return "the sessions in this store"


@dataclass(frozen=True)
class ToolSpec:
    """A tool's name, description and JSON Schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]
    read_only: bool
    destructive: bool

    def copy_parameters(self) -> dict[str, Any]:
        """A deep copy of the schema the caller may change."""
        return copy.deepcopy(self.parameters)


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def tool_specs(owner: str, agent_id: str | None) -> dict[str, ToolSpec]:
    """Every tool's spec for a skill acting in scope (owner, agent_id), in the Go order."""
    scope = describe_scope(owner, agent_id)
    visible = (
        f" Only {scope} are visible: any other session id is reported as not found."
        if owner or agent_id is not None
        else ""
    )
    session_id = {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_SESSION_ID_LENGTH,
        "description": f"The id of one of {scope}.",
    }
    key = {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_METADATA_KEY_LENGTH,
        "description": "The metadata key.",
    }
    specs = [
        (
            "sessions_list",
            f"List {scope}, most recently updated first, with message counts and timestamps, "
            f"one page at a time (pass next_cursor back as cursor for the next page).",
            _object(
                {
                    "limit": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_LIST_LIMIT,
                        "default": DEFAULT_LIST_LIMIT,
                        "description": f"Sessions per page (default {DEFAULT_LIST_LIMIT}, "
                        f"at most {MAX_LIST_LIMIT}).",
                    },
                    "cursor": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": MAX_CURSOR_LENGTH,
                        "description": "The next_cursor of the previous page.",
                    },
                },
                [],
            ),
        ),
        (
            "sessions_history",
            "Show the latest messages of a session, oldest first: role, content, the tool "
            "calls an assistant made (id, name, arguments) and which call a tool result "
            "answers (tool_call_id). A window never opens on a tool result without its call."
            + visible,
            _object(
                {
                    "session_id": session_id,
                    "limit": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_HISTORY_LIMIT,
                        "default": DEFAULT_HISTORY_LIMIT,
                        "description": "How many of the latest messages to return (default "
                        f"{DEFAULT_HISTORY_LIMIT}, at most {MAX_HISTORY_LIMIT}).",
                    },
                },
                ["session_id"],
            ),
        ),
        (
            "sessions_get",
            "Get a session's details: agent, message count, timestamps and metadata." + visible,
            _object({"session_id": session_id}, ["session_id"]),
        ),
        (
            "sessions_clear",
            "Remove every message from a session (its metadata is kept)." + visible,
            _object({"session_id": session_id}, ["session_id"]),
        ),
        (
            "sessions_delete",
            "Delete a session with all its messages and metadata." + visible,
            _object({"session_id": session_id}, ["session_id"]),
        ),
        (
            "sessions_metadata_set",
            f"Set a metadata value on one of {scope} (created if it does not exist). The value "
            "is parsed as JSON when it is valid JSON, otherwise stored as a string.",
            _object(
                {
                    "session_id": session_id,
                    "key": key,
                    "value": {
                        "type": "string",
                        "maxLength": MAX_METADATA_VALUE_LENGTH,
                        "description": 'The value: JSON (e.g. 42, true, {"a": 1}) or plain text.',
                    },
                },
                ["session_id", "key", "value"],
            ),
        ),
        (
            "sessions_metadata_get",
            "Read a metadata value from a session." + visible,
            _object({"session_id": session_id, "key": key}, ["session_id", "key"]),
        ),
    ]
    return {
        name: ToolSpec(
            name,
            description,
            parameters,
            read_only=name in READ_TOOLS,
            destructive=name in DESTRUCTIVE_TOOLS,
        )
        for name, description, parameters in specs
    }


# --- argument checks --------------------------------------------------------------------


def check_arguments(spec: ToolSpec, arguments: Any) -> dict[str, Any]:
    """`arguments` checked against the tool's schema, defaults filled in. An integer above
    its maximum is kept as given: the tool clamps it and says so in its result."""
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise BadArguments(f"arguments must be a JSON object, not {json_type(arguments)}")
    properties: dict[str, Any] = spec.parameters["properties"]
    unknown = sorted(str(key) for key in arguments if key not in properties)
    if unknown:
        expected = ", ".join(properties) or "none"
        raise BadArguments(f"unknown parameter {unknown[0]!r} (expected: {expected})")
    checked: dict[str, Any] = {}
    for key, schema in properties.items():
        if arguments.get(key) is None:
            if key in spec.parameters["required"]:
                raise BadArguments(f"missing required parameter {key!r}")
            checked[key] = schema.get("default")
            continue
        checked[key] = _check_value(key, schema, arguments[key])
    return checked


def _check_value(key: str, schema: dict[str, Any], value: Any) -> Any:
    if schema["type"] == "integer":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadArguments(f"parameter {key!r} must be an integer, not {json_type(value)}")
        if value < schema["minimum"]:
            raise BadArguments(f"parameter {key!r} must be at least {schema['minimum']} ({value})")
        return value
    if key == "value" and not isinstance(value, str):
        # A JSON value given directly instead of as text is taken as is, within the size limit.
        text = _json_text_or_none(value)
        if text is None:
            raise BadArguments(f"parameter {key!r} must be a string, not {json_type(value)}")
        _check_length(key, schema, len(text))
        return value
    if not isinstance(value, str):
        raise BadArguments(f"parameter {key!r} must be a string, not {json_type(value)}")
    if schema.get("minLength", 0) > len(value):
        raise BadArguments(f"parameter {key!r} must not be empty")
    _check_length(key, schema, len(value))
    return value


def _check_length(key: str, schema: dict[str, Any], length: int) -> None:
    if length > schema["maxLength"]:
        raise BadArguments(
            f"parameter {key!r} is longer than {schema['maxLength']} characters ({length})"
        )


def _json_text_or_none(value: Any) -> str | None:
    try:
        return json_text(value)
    except (TypeError, ValueError, RecursionError):
        return None


def json_type(value: Any) -> str:
    """The JSON name of `value`'s type, for error messages a model understands."""
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    names.update({list: "an array", dict: "an object", type(None): "null"})
    return names.get(type(value), type(value).__name__)
