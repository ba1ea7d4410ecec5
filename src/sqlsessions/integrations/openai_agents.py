"""The OpenAI Agents SDK's ``Session`` protocol on sqlsessions (extra ``openai-agents``).

One line switches an agent from the SDK's own backends::

    session = SqlSessionsSession.from_url("chat-1", "postgresql://user@host/db")
    result = await Runner.run(agent, "Hello", session=session)

Each Responses API input item is stored verbatim (``messages.item``, format
``"openai-agents"``) and projected onto the normalized columns:

- a message (``{"role": ..., "content": ...}``) -> that role (``developer`` -> ``system``)
  with its text parts joined as content;
- ``function_call`` / ``custom_tool_call`` -> an ``assistant`` message carrying one tool call
  (``call_id``, ``name``, ``arguments`` / ``input``);
- ``function_call_output`` / ``custom_tool_call_output`` -> a ``tool`` message answering
  ``call_id``;
- anything else (``reasoning``, ``compaction``, hosted-tool calls such as
  ``web_search_call``...) -> an ``assistant`` row whose ``kind`` is the item's type (not a
  chat message: the analytics views do not count it); a reasoning item's content is its
  summary text.

Messages written through another API (the Go API, another framework) are read back as
equivalent Responses items built from the projection.

Token usage: the Runner passes a session its run context (``wrapper``) when every session
method accepts one; each ``add_items`` batch records the model requests not yet recorded for
that run on its last assistant item (model name: the session's ``model`` option).
Compaction: ``OpenAIResponsesCompactionSession`` replaces the items through the hook
``_atomic_replace_items`` -> :meth:`SqlSessionsSession.replace_items` (``replace_history``),
so the replaced items stay archived instead of being cleared.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, TypeVar, cast

from agents.items import TResponseInputItem
from agents.memory import SessionSettings
from agents.run_context import RunContextWrapper
from agents.usage import RequestUsage
from sqlalchemy.ext.asyncio import AsyncEngine

from sqlsessions.aio import AsyncStore
from sqlsessions.compaction import HistoryReplaced
from sqlsessions.config import DEFAULT_SESSION_TTL, StoreConfig
from sqlsessions.errors import InvalidInputError
from sqlsessions.models import Message, Role, ToolCall, ToolFunction
from sqlsessions.validation import MAX_KIND_LENGTH

ITEM_FORMAT = "openai-agents"
"""`messages.item_format` of the items this adapter writes."""

T = TypeVar("T")

_ROLES = {"user": Role.USER, "assistant": Role.ASSISTANT, "system": Role.SYSTEM}
_ROLES["developer"] = Role.SYSTEM
_CALLS = {"function_call": "arguments", "custom_tool_call": "input"}
_OUTPUTS = ("function_call_output", "custom_tool_call_output")


class SqlSessionsSession:
    """An OpenAI Agents SDK session whose items live in a sqlsessions database.

    Implements the SDK's ``Session`` protocol: ``get_items(limit)`` returns the latest items in
    chronological order (ties cannot happen: positions are unique), an explicit ``limit``
    overrides ``session_settings.limit``, each ``add_items`` batch is one atomic, ordered
    append, ``pop_item`` and ``clear_session`` are atomic and server-side. A store or engine
    passed in is never closed by the session.
    """

    def __init__(
        self,
        session_id: str,
        store: AsyncStore,
        *,
        session_settings: SessionSettings | None = None,
        owns_store: bool = False,
        model: str | None = None,
    ) -> None:
        """`model`: the model name recorded with token usage (the SDK tells a session the
        tokens of each response, not which model produced it)."""
        if not isinstance(store, AsyncStore):
            raise InvalidInputError("store", f"must be an AsyncStore, not {type(store).__name__}")
        self.session_id = session_id
        self.session_settings: SessionSettings | None = session_settings or SessionSettings()
        self.store = store
        self.model = model
        self._owns_store = owns_store
        self._usage_seen: weakref.WeakKeyDictionary[RunContextWrapper[Any], int] = (
            weakref.WeakKeyDictionary()
        )

    @classmethod
    def from_url(
        cls,
        session_id: str,
        url: str,
        *,
        session_settings: SessionSettings | None = None,
        model: str | None = None,
        ttl: Any = DEFAULT_SESSION_TTL,
        **store_options: Any,
    ) -> SqlSessionsSession:
        """A session on its own store for `url` (closed by :meth:`close`)."""
        store = AsyncStore(StoreConfig(url=url, ttl=ttl, **store_options))
        return cls(
            session_id, store, session_settings=session_settings, owns_store=True, model=model
        )

    @classmethod
    def from_engine(
        cls,
        session_id: str,
        engine: AsyncEngine,
        *,
        session_settings: SessionSettings | None = None,
        model: str | None = None,
        ttl: Any = DEFAULT_SESSION_TTL,
        **store_options: Any,
    ) -> SqlSessionsSession:
        """A session on an existing SQLAlchemy asyncio engine (never disposed by the session)."""
        config = StoreConfig(url=engine.url, ttl=ttl, **store_options)
        store = AsyncStore(config, engine=engine)
        return cls(session_id, store, session_settings=session_settings, model=model)

    # --- the Session protocol ----------------------------------------------------------------

    # Every method takes the SDK's optional `wrapper` (the run context): the Runner passes it
    # only to sessions whose four methods all accept it, and add_items reads usage from it.

    async def get_items(
        self, limit: int | None = None, wrapper: RunContextWrapper[Any] | None = None
    ) -> list[TResponseInputItem]:
        """The latest `limit` items (all when None) in chronological order."""
        if limit is None and self.session_settings is not None:
            limit = self.session_settings.limit
        if limit is not None and limit <= 0:
            return []
        entries = await self.store.last_items(self.session_id, ITEM_FORMAT, limit)
        items: list[Any] = []
        for entry in entries:
            if isinstance(entry, Message):  # written through another API: rebuilt
                items.extend(items_of(entry))
            elif entry is not None:
                items.append(entry)
        if limit is not None and len(items) > limit:  # a foreign message may yield several
            items = items[-limit:]
        return cast("list[TResponseInputItem]", items)

    async def add_items(
        self, items: list[TResponseInputItem], wrapper: RunContextWrapper[Any] | None = None
    ) -> None:
        """Append the items, in order, in one atomic write. Given the run context (the Runner
        passes it), the token usage of the model responses since the previous batch is
        recorded on the batch's last assistant item."""
        if not items:
            return
        messages = [message_of(item, f"items[{i}]") for i, item in enumerate(items)]
        seen = self._attach_usage(messages, wrapper)
        await _settle(self.store.append(self.session_id, *messages))
        if wrapper is not None and seen is not None:
            self._usage_seen[wrapper] = seen

    def _attach_usage(
        self, messages: list[Message], wrapper: RunContextWrapper[Any] | None
    ) -> int | None:
        """Put the usage of the requests not yet recorded for this run on the last assistant
        message of `messages`; returns how many requests are then recorded (None: no change)."""
        if wrapper is None:
            return None
        entries = wrapper.usage.request_usage_entries
        target = _usage_target(messages)
        seen = self._usage_seen.get(wrapper)
        if seen is None:  # a run's first batch; a resumed run already recorded all but the last
            seen = max(len(entries) - 1, 0) if target is not None else len(entries)
        if target is None or seen >= len(entries):
            return seen
        messages[target] = messages[target].model_copy(
            update=_usage_fields(entries[seen:], self.model)
        )
        return len(entries)

    async def pop_item(
        self, wrapper: RunContextWrapper[Any] | None = None
    ) -> TResponseInputItem | None:
        """Remove and return the most recent item (None when the session is empty)."""
        message = await _settle(self.store.pop(self.session_id))
        if message is None:
            return None
        items = items_of(message)
        return cast("TResponseInputItem", items[-1]) if items else None

    async def clear_session(self, wrapper: RunContextWrapper[Any] | None = None) -> None:
        """Remove every item of the session."""
        await _settle(self.store.clear(self.session_id))

    # --- compaction without loss -------------------------------------------------------------

    async def replace_items(
        self, items: list[TResponseInputItem], *, expected_version: int | None = None
    ) -> HistoryReplaced:
        """Atomically replace every item with `items` (e.g. a compacted history), keeping the
        replaced ones as an archived segment (``store.archived_history``,
        ``store.restore_history``). ConflictError if the session moved past
        `expected_version`."""
        messages: list[Message | dict[str, Any]] = [
            message_of(item, f"items[{i}]") for i, item in enumerate(items)
        ]
        return await _settle(
            self.store.replace_history(self.session_id, messages, expected_version=expected_version)
        )

    async def _atomic_replace_items(self, items: list[TResponseInputItem]) -> bool:
        """The hook ``OpenAIResponsesCompactionSession`` calls instead of clear-then-add."""
        await self.replace_items(items)
        return True

    async def close(self) -> None:
        """Close the store if this session created it (from_url); otherwise do nothing."""
        if self._owns_store:
            await self.store.close()


async def _settle(operation: Awaitable[T]) -> T:
    """Await a write to its end even if the caller is cancelled meanwhile (then re-raise the
    cancellation): a cancelled caller never leaves it unknown whether the write happened."""
    task = asyncio.ensure_future(operation)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if task.done() and task.cancelled():
            raise
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                continue
        task.result()
        raise


def _usage_target(messages: Sequence[Message]) -> int | None:
    """The index of the message that carries a model response's usage: the last assistant
    chat message (an answer or a tool call), else the last assistant row (reasoning...)."""
    assistant = [i for i, m in enumerate(messages) if m.role is Role.ASSISTANT]
    chat = [i for i in assistant if messages[i].is_chat]
    candidates = chat or assistant
    return candidates[-1] if candidates else None


def _usage_fields(entries: Sequence[RequestUsage], model: str | None) -> dict[str, Any]:
    """The usage fields for the requests `entries` (OpenAI counts cached tokens in the input
    and reasoning tokens in the output, as sqlsessions does)."""
    return {
        "model": model,
        "input_tokens": sum(e.input_tokens for e in entries),
        "output_tokens": sum(e.output_tokens for e in entries),
        "cached_tokens": sum(e.input_tokens_details.cached_tokens or 0 for e in entries),
        "reasoning_tokens": sum(e.output_tokens_details.reasoning_tokens or 0 for e in entries),
    }


# --- projection ----------------------------------------------------------------------------------


def message_of(item: Any, field: str = "item") -> Message:
    """The stored message for one Responses input item (the item kept verbatim)."""
    if hasattr(item, "model_dump") and not isinstance(item, Mapping):
        item = item.model_dump(mode="json", exclude_unset=True)
    if not isinstance(item, Mapping):
        raise InvalidInputError(field, f"must be a dict (a Responses input item), not {item!r}")
    raw = dict(item)
    item_type = raw.get("type")
    common: dict[str, Any] = {"item": raw, "item_format": ITEM_FORMAT}
    try:
        if item_type in (None, "message") and raw.get("role") in _ROLES:
            return Message(role=_ROLES[raw["role"]], content=_text(raw.get("content")), **common)
        if item_type in _CALLS:
            call = ToolCall(
                id=str(raw.get("call_id") or raw.get("id") or ""),
                function=ToolFunction(
                    name=str(raw.get("name", "")), arguments=_as_str(raw.get(_CALLS[item_type]))
                ),
            )
            return Message(role=Role.ASSISTANT, tool_calls=[call], **common)
        if item_type in _OUTPUTS:
            return Message(
                role=Role.TOOL,
                content=_text(raw.get("output")),
                tool_call_id=str(raw.get("call_id") or "") or None,
                **common,
            )
        kind = str(item_type or "unknown")[:MAX_KIND_LENGTH]
        return Message(role=Role.ASSISTANT, kind=kind, content=_summary(raw), **common)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{field}.{exc.field}", exc.reason) from exc


def items_of(message: Message) -> list[dict[str, Any]]:
    """The Responses input items a stored message stands for: its own item if this adapter
    wrote it, else items rebuilt from the projection (empty for another framework's
    non-chat items)."""
    if message.item is not None and message.item_format == ITEM_FORMAT:
        return [message.item]
    if not message.is_chat:
        return []
    if message.role is Role.TOOL:
        return [
            {
                "type": "function_call_output",
                "call_id": message.tool_call_id or "",
                "output": message.content,
            }
        ]
    items: list[dict[str, Any]] = []
    if message.content or not message.tool_calls:
        items.append({"role": message.role.value, "content": message.content})
    for call in message.tool_calls or ():
        items.append(
            {
                "type": "function_call",
                "call_id": call.id,
                "name": call.function.name,
                "arguments": call.function.arguments,
            }
        )
    return items


def _text(content: Any) -> str:
    """The text of a message's content: a string, or the text of its parts joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, Mapping):
                text = part.get("text", part.get("refusal"))
                if isinstance(text, str):
                    texts.append(text)
            elif isinstance(part, str):
                texts.append(part)
        return "\n".join(texts)
    return _as_str(content)


def _summary(item: Mapping[str, Any]) -> str:
    summary = item.get("summary")
    return _text(summary) if isinstance(summary, list) else ""


def _as_str(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)
