"""Skill: the session tools an agent can call (the Go package's `Skill`), on a `Store`.

>>> skill = Skill()
>>> skill.set_storage("sqlite:///sessions.db")
>>> skill.init()
>>> skill.call("sessions_metadata_set", {"session_id": "chat-1", "key": "lang", "value": '"en"'})
{'session_id': 'chat-1', 'key': 'lang', 'status': 'set'}

Every handler takes the tool's arguments as a dict and returns a JSON-serialisable dict.
A handler never raises: a missing or mistyped parameter, an unknown session or a storage
failure comes back as ``{"error": "<what went wrong>"}`` so the model can read it and retry.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from sqlsessions.config import StoreConfig
from sqlsessions.errors import ConflictError, SqlSessionsError
from sqlsessions.models import Session, format_timestamp
from sqlsessions.queries import MAX_PAGE_SIZE, SessionSummary
from sqlsessions.store import Store

__all__ = ["DEFAULT_HISTORY_LIMIT", "Skill", "Tool", "ToolHandler"]

DEFAULT_HISTORY_LIMIT = 50
_CONFLICT_RETRIES = 5

ToolHandler = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Tool:
    """One tool: its name, what it does, a JSON Schema of its arguments, and its handler."""

    name: str
    description: str
    parameters: dict[str, Any]
    handler: ToolHandler

    def openai_spec(self) -> dict[str, Any]:
        """The tool in OpenAI's function-calling format."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def __call__(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return self.handler(arguments)


class _BadArguments(Exception):
    """A tool argument is missing or has the wrong type (becomes an error result)."""


# --- parameter schemas ------------------------------------------------------------------

_SESSION_ID = {"type": "string", "description": "The id of the session."}


def _schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


_SPECS: dict[str, tuple[str, dict[str, Any]]] = {
    "sessions_list": (
        "List all conversation sessions with their message counts and timestamps.",
        _schema({}, []),
    ),
    "sessions_history": (
        "Show the most recent messages (role and content) of a session.",
        _schema(
            {
                "session_id": _SESSION_ID,
                "limit": {
                    "type": "integer",
                    "minimum": 1,
                    "default": DEFAULT_HISTORY_LIMIT,
                    "description": "How many of the latest messages to return (default 50).",
                },
            },
            ["session_id"],
        ),
    ),
    "sessions_get": (
        "Get a session's details: agent, message count, timestamps and metadata.",
        _schema({"session_id": _SESSION_ID}, ["session_id"]),
    ),
    "sessions_clear": (
        "Remove every message from a session (its metadata is kept).",
        _schema({"session_id": _SESSION_ID}, ["session_id"]),
    ),
    "sessions_delete": (
        "Delete a session with all its messages and metadata.",
        _schema({"session_id": _SESSION_ID}, ["session_id"]),
    ),
    "sessions_metadata_set": (
        "Set a metadata value on a session (the session is created if it does not exist). "
        "The value is parsed as JSON when it is valid JSON, otherwise stored as a string.",
        _schema(
            {
                "session_id": _SESSION_ID,
                "key": {"type": "string", "description": "The metadata key."},
                "value": {
                    "type": "string",
                    "description": 'The value: JSON (e.g. 42, true, {"a": 1}) or plain text.',
                },
            },
            ["session_id", "key", "value"],
        ),
    ),
    "sessions_metadata_get": (
        "Read a metadata value from a session.",
        _schema(
            {
                "session_id": _SESSION_ID,
                "key": {"type": "string", "description": "The metadata key."},
            },
            ["session_id", "key"],
        ),
    ),
}


def _check_arguments(name: str, arguments: Any) -> dict[str, Any]:
    """`arguments` checked against the tool's schema, with defaults filled in."""
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise _BadArguments(f"arguments must be a JSON object, not {type(arguments).__name__}")
    schema = _SPECS[name][1]
    properties: dict[str, Any] = schema["properties"]
    unknown = sorted(key for key in arguments if key not in properties)
    if unknown:
        expected = ", ".join(properties) or "none"
        raise _BadArguments(f"unknown parameter {unknown[0]!r} (expected: {expected})")
    checked: dict[str, Any] = {}
    for key, spec in properties.items():
        if key not in arguments or arguments[key] is None:
            if key in schema["required"]:
                raise _BadArguments(f"missing required parameter {key!r}")
            if "default" in spec:
                checked[key] = spec["default"]
            continue
        checked[key] = _check_value(key, spec, arguments[key])
    return checked


def _check_value(key: str, spec: dict[str, Any], value: Any) -> Any:
    if spec["type"] == "integer":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _BadArguments(f"parameter {key!r} must be an integer, not {_json_type(value)}")
        if value < spec.get("minimum", value):
            raise _BadArguments(f"parameter {key!r} must be at least {spec['minimum']} ({value})")
        return value
    if key == "value":  # a JSON value given directly instead of as text is taken as is
        return value
    if not isinstance(value, str):
        raise _BadArguments(f"parameter {key!r} must be a string, not {_json_type(value)}")
    if key in ("session_id", "key") and not value:
        raise _BadArguments(f"parameter {key!r} must not be empty")
    return value


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    names.update({list: "an array", dict: "an object", type(None): "null"})
    return names.get(type(value), type(value).__name__)


def _parse_value(value: Any) -> Any:
    """A string that is valid JSON becomes that JSON value; anything else stays as given."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


# --- the skill --------------------------------------------------------------------------


class Skill:
    """Session management tools for an agent (the Go package's `Skill`).

    Give it storage with `set_storage` (a database URL, a SQLAlchemy Engine, or a `Store`),
    call `init()`, then hand `tools()` (or `openai_tools()`) to the agent. `close()`
    releases a store the skill created itself; a `Store` passed in stays the caller's.
    """

    name = "sessions"
    description = "Manage conversation sessions, view history, and interact with other sessions"

    def __init__(self, storage: str | URL | Engine | Store | None = None) -> None:
        self._store: Store | None = None
        self._owns_store = False
        self._initialized = False
        if storage is not None:
            self.set_storage(storage)

    @property
    def store(self) -> Store:
        """The store the tools work on; SqlSessionsError if no storage was set."""
        if self._store is None:
            raise SqlSessionsError(
                "the sessions skill has no storage: call skill.set_storage(url or Store) "
                "before skill.init()"
            )
        return self._store

    def set_storage(self, storage: str | URL | Engine | Store) -> None:
        """Use `storage`: a URL or Engine (a store with the default TTL is built) or a Store."""
        self.close()
        if isinstance(storage, Store):
            self._store, self._owns_store = storage, False
        elif isinstance(storage, Engine):
            self._store = Store(StoreConfig(url=storage.url), engine=storage)
            self._owns_store = True
        elif isinstance(storage, (str, URL)):
            self._store, self._owns_store = Store(StoreConfig(url=storage)), True
        else:
            raise SqlSessionsError(
                f"set_storage expects a database URL, an Engine or a Store, "
                f"not {type(storage).__name__}"
            )

    def init(self) -> None:
        """Check the skill is ready; SqlSessionsError with a clear message if no storage set."""
        _ = self.store
        self._initialized = True

    def close(self) -> None:
        """Release the store if the skill created it (a Store passed in is left open)."""
        if self._store is not None and self._owns_store:
            self._store.close()
        self._store, self._owns_store, self._initialized = None, False, False

    def __enter__(self) -> Skill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- tools --------------------------------------------------------------------------

    def tools(self) -> list[Tool]:
        """The seven session tools, each with its JSON Schema and handler."""
        handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "sessions_list": self._list,
            "sessions_history": self._history,
            "sessions_get": self._get,
            "sessions_clear": self._clear,
            "sessions_delete": self._delete,
            "sessions_metadata_set": self._metadata_set,
            "sessions_metadata_get": self._metadata_get,
        }
        return [
            Tool(
                name,
                description,
                json.loads(json.dumps(parameters)),  # a copy the caller may change
                self._guarded(name, handlers[name]),
            )
            for name, (description, parameters) in _SPECS.items()
        ]

    def openai_tools(self) -> list[dict[str, Any]]:
        """The tools in OpenAI's function-calling format (`tools=` of a chat completion)."""
        return [tool.openai_spec() for tool in self.tools()]

    def call(self, name: str, arguments: dict[str, Any] | str | None = None) -> dict[str, Any]:
        """Run tool `name` with `arguments` (a dict, or the JSON text a model produced)."""
        if name not in _SPECS:
            return {"error": f"unknown tool {name!r}; available: {', '.join(_SPECS)}"}
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except ValueError as exc:
                return {"error": f"arguments are not valid JSON: {exc}"}
        tool = next(tool for tool in self.tools() if tool.name == name)
        return tool.handler(arguments or {})

    def _guarded(self, name: str, handler: ToolHandler) -> ToolHandler:
        def run(arguments: dict[str, Any]) -> dict[str, Any]:
            try:
                return handler(_check_arguments(name, arguments))
            except (_BadArguments, SqlSessionsError) as exc:
                return {"error": f"{name}: {exc}"}
            except Exception as exc:  # a tool must answer, never crash the agent loop
                return {"error": f"{name}: unexpected error: {type(exc).__name__}: {exc}"}

        run.__name__ = name
        run.__doc__ = _SPECS[name][0]
        return run

    # --- handlers (arguments already checked) -------------------------------------------

    def _list(self, _args: dict[str, Any]) -> dict[str, Any]:
        summaries = [
            {
                "id": item.id,
                "message_count": item.message_count,
                "created_at": format_timestamp(item.created_at),
                "updated_at": format_timestamp(item.updated_at),
            }
            for item in _all_summaries(self.store)
        ]
        return {"sessions": summaries, "total": len(summaries)}

    def _history(self, args: dict[str, Any]) -> dict[str, Any]:
        session = self.store.get_if_exists(args["session_id"])
        window = session.messages[-args["limit"] :]
        return {
            "session_id": session.id,
            "messages": [{"role": m.role.value, "content": m.content} for m in window],
            "total": len(session.messages),
            "returned": len(window),
        }

    def _get(self, args: dict[str, Any]) -> dict[str, Any]:
        session = self.store.get_if_exists(args["session_id"])
        return {
            "id": session.id,
            "agent_id": session.agent_id,
            "message_count": len(session.messages),
            "created_at": format_timestamp(session.created_at),
            "updated_at": format_timestamp(session.updated_at),
            "metadata": dict(session.metadata),
        }

    def _clear(self, args: dict[str, Any]) -> dict[str, Any]:
        def clear(session: Session) -> int:
            count = len(session.messages)
            session.clear()
            return count

        cleared = self._update(args["session_id"], clear, create=False)
        return {"session_id": args["session_id"], "messages_cleared": cleared, "status": "cleared"}

    def _delete(self, args: dict[str, Any]) -> dict[str, Any]:
        self.store.delete(args["session_id"])
        return {"session_id": args["session_id"], "status": "deleted"}

    def _metadata_set(self, args: dict[str, Any]) -> dict[str, Any]:
        value = _parse_value(args["value"])
        self._update(args["session_id"], lambda s: s.set_metadata(args["key"], value), create=True)
        return {"session_id": args["session_id"], "key": args["key"], "status": "set"}

    def _metadata_get(self, args: dict[str, Any]) -> dict[str, Any]:
        session = self.store.get_if_exists(args["session_id"])
        value, found = session.get_metadata(args["key"])
        result: dict[str, Any] = {"session_id": session.id, "key": args["key"]}
        if found:
            result["value"] = value
        result["exists"] = found
        return result

    def _update(self, session_id: str, change: Callable[[Session], Any], *, create: bool) -> Any:
        """Load, change and save a session, retrying if another writer got there first."""
        for attempt in range(_CONFLICT_RETRIES):
            session = self.store.get(session_id) if create else self.store.get_if_exists(session_id)
            outcome = change(session)
            try:
                self.store.save(session)
            except ConflictError:
                if attempt == _CONFLICT_RETRIES - 1:
                    raise
                continue
            return outcome
        raise AssertionError("unreachable")  # pragma: no cover


def _all_summaries(store: Store) -> list[SessionSummary]:
    """Every live session's summary, ordered by id (read in pages of `list_sessions`)."""
    found: list[SessionSummary] = []
    cursor = None
    while True:
        page = store.list_sessions(limit=MAX_PAGE_SIZE, cursor=cursor)
        found.extend(page.sessions)
        cursor = page.next_cursor
        if cursor is None:
            return sorted(found, key=lambda item: item.id)
