"""Skill: the session tools an agent can call (the Go package's `Skill`), on a store.

>>> skill = Skill()
>>> skill.set_storage("sqlite:///sessions.db")
>>> skill.init()
>>> skill.call("sessions_metadata_set", {"session_id": "chat-1", "key": "lang", "value": '"en"'})
{'session_id': 'chat-1', 'key': 'lang', 'status': 'set'}

Every tool takes its arguments as a dict and returns a JSON-serialisable dict. A tool never
raises: a missing or mistyped parameter, an unknown session, a tool not permitted or a
storage failure comes back as ``{"error": "<what went wrong>"}`` so the model can read it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from sqlsessions.aio import AsyncStore
from sqlsessions.config import StoreConfig
from sqlsessions.errors import InvalidInputError, SqlSessionsError
from sqlsessions.scope import Scope
from sqlsessions.skill import specs
from sqlsessions.skill.specs import BadArguments, ToolSpec
from sqlsessions.skill.steps import TOOL_STEPS, run_async, run_sync
from sqlsessions.store import Store

ToolHandler = Callable[[dict[str, Any]], dict[str, Any]]
AsyncToolHandler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
AnyStore = Store | AsyncStore


@dataclass(frozen=True)
class Tool:
    """One tool: its name, what it does, a JSON Schema of its arguments, and its handlers
    (`handler` for a skill on a `Store`, `async_handler` for one on an `AsyncStore`)."""

    name: str
    description: str
    parameters: dict[str, Any]
    handler: ToolHandler
    async_handler: AsyncToolHandler
    read_only: bool = False
    destructive: bool = False

    def openai_spec(self, api: Literal["chat", "responses"] = "chat") -> dict[str, Any]:
        """The tool as an OpenAI function tool: Chat Completions' `tools=` entry, or with
        `api="responses"` the Responses API's (flat, and not in strict mode)."""
        if api == "responses":
            return {
                "type": "function",
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
                "strict": False,
            }
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def anthropic_spec(self) -> dict[str, Any]:
        """The tool as an entry of the Anthropic Messages API's `tools`."""
        return {"name": self.name, "description": self.description, "input_schema": self.parameters}

    def mcp_spec(self) -> dict[str, Any]:
        """The tool as an entry of an MCP `tools/list` result."""
        return {
            "name": self.name,
            "description": self.description,
            "inputSchema": self.parameters,
            "annotations": {
                "readOnlyHint": self.read_only,
                "destructiveHint": self.destructive,
                "idempotentHint": True,  # calling any of them twice changes nothing more
                "openWorldHint": False,
            },
        }

    def __call__(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return self.handler(arguments)


class Skill:
    """Session management tools for an agent (the Go package's `Skill`).

    `Skill(store, allow=..., owner=..., agent_id=...)`, or `Skill()` then `set_storage`
    (a database URL, an Engine, a `Store` or an `AsyncStore`) and `init()`. Hand `tools()`
    (or `openai_tools()`, `anthropic_tools()`, `mcp_tools()`) to the model and run its calls
    with `call` (on a `Store`) or `await acall` (on an `AsyncStore`).

    Only the tools in `allow` are listed and run (default `Skill.DEFAULT_TOOLS`: the read
    tools and `sessions_metadata_set`; `sessions_clear` and `sessions_delete` only when
    allowed). The tools act only in the store's scope; `owner`/`agent_id` narrow it with
    `store.scoped(...)`. `close()` releases a store the skill created itself.
    """

    name = "sessions"
    description = "Manage conversation sessions, view history, and interact with other sessions"

    ALL_TOOLS = specs.ALL_TOOLS
    READ_TOOLS = specs.READ_TOOLS
    DESTRUCTIVE_TOOLS = specs.DESTRUCTIVE_TOOLS
    DEFAULT_TOOLS = specs.DEFAULT_TOOLS

    def __init__(
        self,
        store: str | URL | Engine | AsyncEngine | AnyStore | None = None,
        *,
        allow: Iterable[str] | None = None,
        owner: str | None = None,
        agent_id: str | None = None,
    ) -> None:
        self.allowed: frozenset[str] = _check_allow(allow)
        if owner is not None or agent_id is not None:
            Scope(owner or "", agent_id)  # InvalidInputError naming the field, before any store
        self._owner, self._agent_id = owner, agent_id
        self._store: AnyStore | None = None
        self._created: AnyStore | None = None  # a store built here, closed by close()
        self._initialized = False
        if store is not None:
            self.set_storage(store)

    @property
    def store(self) -> AnyStore:
        """The store the tools work on; SqlSessionsError if no storage was set."""
        if self._store is None:
            raise SqlSessionsError(
                "the sessions skill has no storage: call skill.set_storage(url or Store) "
                "before skill.init()"
            )
        return self._store

    def set_storage(self, storage: str | URL | Engine | AsyncEngine | AnyStore) -> None:
        """Use `storage`: a URL or Engine (a `Store` with the default TTL is built; an
        AsyncEngine builds an `AsyncStore`), or a `Store`/`AsyncStore` (left open by close)."""
        self.close()
        store: AnyStore
        if isinstance(storage, (Store, AsyncStore)):
            store = storage
        elif isinstance(storage, Engine):
            store = self._created = Store(StoreConfig(url=storage.url), engine=storage)
        elif isinstance(storage, AsyncEngine):
            store = self._created = AsyncStore(StoreConfig(url=storage.url), engine=storage)
        elif isinstance(storage, (str, URL)):
            store = self._created = Store(StoreConfig(url=storage))
        else:
            raise SqlSessionsError(
                f"set_storage expects a database URL, an Engine, a Store or an AsyncStore, "
                f"not {type(storage).__name__}"
            )
        if self._owner is not None or self._agent_id is not None:
            try:
                store = store.scoped(self._owner, agent_id=self._agent_id)
            except SqlSessionsError:
                self.close()  # a store built here for this skill is released
                raise
        self._store = store

    def init(self) -> None:
        """Check the skill is ready; SqlSessionsError with a clear message if no storage set."""
        _ = self.store
        self._initialized = True

    def close(self) -> None:
        """Release the store if the skill created it from a URL or Engine (a store passed in
        is left open; an AsyncStore built on an AsyncEngine holds nothing of its own)."""
        if isinstance(self._created, Store):
            self._created.close()
        self._store, self._created, self._initialized = None, None, False

    def __enter__(self) -> Skill:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Skill:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # --- tools --------------------------------------------------------------------------

    def tools(self) -> list[Tool]:
        """The permitted tools, each with its JSON Schema and handlers, in the Go order."""
        return [
            Tool(
                spec.name,
                spec.description,
                spec.copy_parameters(),
                self._sync_handler(spec.name),
                self._async_handler(spec.name),
                read_only=spec.read_only,
                destructive=spec.destructive,
            )
            for spec in self._specs().values()
            if spec.name in self.allowed
        ]

    def openai_tools(self, api: Literal["chat", "responses"] = "chat") -> list[dict[str, Any]]:
        """The permitted tools as OpenAI function tools (Chat Completions `tools=`, or the
        Responses API's with `api="responses"`)."""
        return [tool.openai_spec(api) for tool in self.tools()]

    def anthropic_tools(self) -> list[dict[str, Any]]:
        """The permitted tools for the Anthropic Messages API's `tools`."""
        return [tool.anthropic_spec() for tool in self.tools()]

    def mcp_tools(self) -> list[dict[str, Any]]:
        """The permitted tools as MCP `tools/list` entries (name, description, inputSchema)."""
        return [tool.mcp_spec() for tool in self.tools()]

    def call(self, name: str, arguments: dict[str, Any] | str | None = None) -> dict[str, Any]:
        """Run tool `name` with `arguments` (a dict, or the JSON text a model produced)."""
        try:
            store, steps = self._prepare(name, arguments, Store)
            return run_sync(steps, store)
        except Exception as exc:  # a tool must answer, never crash the agent loop
            return _error_result(name, exc)

    async def acall(
        self, name: str, arguments: dict[str, Any] | str | None = None
    ) -> dict[str, Any]:
        """`call` for a skill on an `AsyncStore`."""
        try:
            store, steps = self._prepare(name, arguments, AsyncStore)
            return await run_async(steps, store)
        except Exception as exc:  # a tool must answer, never crash the agent loop
            return _error_result(name, exc)

    # --- running a tool -----------------------------------------------------------------

    def _specs(self) -> dict[str, ToolSpec]:
        return specs.tool_specs(*self._scope())

    def _scope(self) -> tuple[str, str | None]:
        """(owner, agent_id) the tools act in: the store's scope, or the one asked for."""
        if self._store is not None:
            return self._store.scope.owner, self._store.scope.agent_id
        return self._owner or "", self._agent_id

    def _sync_handler(self, name: str) -> ToolHandler:
        def run(arguments: dict[str, Any]) -> dict[str, Any]:
            return self.call(name, arguments)

        run.__name__ = name
        return run

    def _async_handler(self, name: str) -> AsyncToolHandler:
        async def run(arguments: dict[str, Any]) -> dict[str, Any]:
            return await self.acall(name, arguments)

        run.__name__ = name
        return run

    def _prepare(self, name: Any, arguments: Any, kind: type[AnyStore]) -> tuple[AnyStore, Any]:
        """The store and the tool's steps for a call, or the reason it cannot run."""
        if not isinstance(name, str) or name not in specs.ALL_TOOLS:
            available = ", ".join(n for n in specs.TOOL_ORDER if n in self.allowed)
            raise BadArguments(f"unknown tool {name!r}; available: {available}")
        if name not in self.allowed:
            raise BadArguments("tool not permitted")
        store = self.store
        if not isinstance(store, kind):
            how = "await skill.acall(...)" if kind is Store else "skill.call(...)"
            raise BadArguments(f"this skill's store is {type(store).__name__}: use {how}")
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except (ValueError, RecursionError) as exc:
                raise BadArguments(f"arguments are not valid JSON: {exc}") from None
        checked = specs.check_arguments(self._specs()[name], arguments)
        return store, TOOL_STEPS[name](checked)


def _error_result(name: Any, exc: Exception) -> dict[str, Any]:
    if isinstance(exc, (BadArguments, SqlSessionsError)):
        return {"error": f"{name}: {exc}"}
    return {"error": f"{name}: unexpected error: {type(exc).__name__}: {exc}"}


def _check_allow(allow: Iterable[str] | None) -> frozenset[str]:
    """The permitted tool names; InvalidInputError naming `allow` for anything else."""
    if allow is None:
        return specs.DEFAULT_TOOLS
    if isinstance(allow, (str, bytes)) or not isinstance(allow, Iterable):
        raise InvalidInputError("allow", "must be a collection of tool names (e.g. a set)")
    names = list(allow)
    unknown = sorted(repr(name) for name in names if name not in specs.ALL_TOOLS)
    if unknown:
        known = ", ".join(specs.TOOL_ORDER)
        raise InvalidInputError("allow", f"unknown tool {', '.join(unknown)} (tools: {known})")
    return frozenset(names)
