"""LangChain's ``BaseChatMessageHistory`` on sqlsessions (extra ``langchain``).

One line switches a ``RunnableWithMessageHistory`` from another backend::

    history = lambda session_id: SqlSessionsChatMessageHistory.from_url(session_id, url)

Sync methods (``messages``, ``add_messages``, ``clear``) run on a ``Store``, async ones
(``aget_messages``, ``aadd_messages``, ``aclear``) on an ``AsyncStore``: real async, never a
thread-pool executor. Each message is stored verbatim (``messages.item`` holds
``langchain_core.messages.message_to_dict(message)``, format ``"langchain"``) and projected:
human -> ``user``, ai -> ``assistant`` with its tool calls (arguments as JSON text), system ->
``system``, tool -> ``tool`` answering ``tool_call_id``, chat -> its role when it is one of
ours (else ``user``), function -> ``tool``. Content given as a list of blocks is projected as
the text of its text blocks. Messages written through another API read back as the
equivalent LangChain messages; another framework's non-chat items are skipped. An AI
message's ``usage_metadata`` and model name fill the message's usage columns.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    message_to_dict,
    messages_from_dict,
)
from langchain_core.messages.tool import tool_call

from sqlsessions.aio import AsyncStore
from sqlsessions.config import DEFAULT_SESSION_TTL, StoreConfig
from sqlsessions.errors import InvalidInputError
from sqlsessions.item_reads import ItemOrMessage
from sqlsessions.models import Message, Role
from sqlsessions.store import Store

ITEM_FORMAT = "langchain"
"""`messages.item_format` of the messages this adapter writes."""

_ROLE_OF_TYPE = {
    "human": Role.USER,
    "ai": Role.ASSISTANT,
    "AIMessageChunk": Role.ASSISTANT,
    "system": Role.SYSTEM,
    "tool": Role.TOOL,
    "function": Role.TOOL,
}


class SqlSessionsChatMessageHistory(BaseChatMessageHistory):
    """The chat history of one session in a sqlsessions database.

    Give a `Store` for the sync methods, an `AsyncStore` for the async ones, or both; stores
    passed in are never closed by the history. :meth:`from_url` makes its own (lazily, so an
    async-only program opens no sync engine) and :meth:`close` / :meth:`aclose` closes them.
    """

    def __init__(
        self,
        session_id: str,
        *,
        store: Store | None = None,
        async_store: AsyncStore | None = None,
        config: StoreConfig | None = None,
    ) -> None:
        """`config`: make the stores not given from it, on first use (closed by close())."""
        super().__init__()
        if store is None and async_store is None and config is None:
            raise InvalidInputError("store", "give a Store, an AsyncStore, or both")
        self.session_id = session_id
        self._store = store
        self._async_store = async_store
        self._config = config
        self._own: list[Store | AsyncStore] = []

    @classmethod
    def from_url(
        cls, session_id: str, url: str, *, ttl: Any = DEFAULT_SESSION_TTL, **store_options: Any
    ) -> SqlSessionsChatMessageHistory:
        """A history on stores of its own for `url` (created on first use)."""
        return cls(session_id, config=StoreConfig(url=url, ttl=ttl, **store_options))

    @property
    def store(self) -> Store:
        """The sync store (created from the URL on first use by a history from `from_url`)."""
        if self._store is None:
            if self._config is None:
                raise InvalidInputError("store", "this history was given no sync Store")
            self._store = Store(self._config)
            self._own.append(self._store)
        return self._store

    @property
    def async_store(self) -> AsyncStore:
        """The async store (created from the URL on first use by a history from `from_url`)."""
        if self._async_store is None:
            if self._config is None:
                raise InvalidInputError("async_store", "this history was given no AsyncStore")
            self._async_store = AsyncStore(self._config)
            self._own.append(self._async_store)
        return self._async_store

    # --- BaseChatMessageHistory --------------------------------------------------------------

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """Every message of the session, oldest first."""
        return messages_of(self.store.last_items(self.session_id, ITEM_FORMAT))

    async def aget_messages(self) -> list[BaseMessage]:
        """Every message of the session, oldest first."""
        return messages_of(await self.async_store.last_items(self.session_id, ITEM_FORMAT))

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append the messages, in order, in one atomic write."""
        if messages:
            self.store.append(self.session_id, *stored_messages(messages))

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Append the messages, in order, in one atomic write."""
        if messages:
            await self.async_store.append(self.session_id, *stored_messages(messages))

    def clear(self) -> None:
        """Remove every message of the session."""
        self.store.clear(self.session_id)

    async def aclear(self) -> None:
        """Remove every message of the session."""
        await self.async_store.clear(self.session_id)

    def close(self) -> None:
        """Close the sync store if this history created it."""
        for store in self._own:
            if isinstance(store, Store):
                store.close()

    async def aclose(self) -> None:
        """Close the stores this history created."""
        for store in self._own:
            if isinstance(store, AsyncStore):
                await store.close()
            else:
                store.close()


# --- projection ----------------------------------------------------------------------------------


def stored_messages(messages: Sequence[BaseMessage]) -> list[Message]:
    """The stored form of each LangChain message (InvalidInputError names a bad one)."""
    return [message_of(message, f"messages[{i}]") for i, message in enumerate(messages)]


def message_of(message: BaseMessage, field: str = "message") -> Message:
    """One LangChain message as a stored message: verbatim item plus projection."""
    if not isinstance(message, BaseMessage):
        raise InvalidInputError(field, f"must be a LangChain message, not {type(message).__name__}")
    # A message's fields, read where pydantic keeps them: asking the model for a field its
    # type lacks (tool_calls on a HumanMessage) costs an exception inside pydantic each time.
    fields = vars(message)
    kind = message.type
    role = _ROLE_OF_TYPE.get(kind)
    if role is None:
        chat_role = fields.get("role", "user")
        role = Role(chat_role) if chat_role in Role._value2member_map_ else Role.USER
    # Only the fields that have a value: the model's defaults are not validated again.
    values: dict[str, Any] = {
        "role": role,
        "content": _text(message.content),
        "item": message_to_dict(message),
        "item_format": ITEM_FORMAT,
    }
    if message.name is not None:
        values["name"] = message.name
    tool_call_id = message.name if kind == "function" else fields.get("tool_call_id")
    if tool_call_id is not None:
        values["tool_call_id"] = tool_call_id
    calls = fields.get("tool_calls")
    if calls:
        values["tool_calls"] = [
            {
                "id": call.get("id") or "",
                "function": {"name": call["name"], "arguments": json.dumps(call.get("args", {}))},
            }
            for call in calls
        ]
    usage = fields.get("usage_metadata")
    if usage:
        values.update(usage_of(message))
    try:
        return Message(**values)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{field}.{exc.field}", exc.reason) from exc


def usage_of(message: BaseMessage) -> dict[str, Any]:
    """The usage fields of an AI message: its `usage_metadata` (input includes cached, output
    includes reasoning, as LangChain counts them) and the model its response metadata names."""
    usage = vars(message).get("usage_metadata")
    if not usage or message.type not in ("ai", "AIMessageChunk"):
        return {}
    metadata = message.response_metadata or {}
    model = metadata.get("model_name") or metadata.get("model")
    input_details = usage.get("input_token_details") or {}
    output_details = usage.get("output_token_details") or {}
    return {
        "model": model if isinstance(model, str) and model else None,
        "input_tokens": usage.get("input_tokens"),
        "output_tokens": usage.get("output_tokens"),
        "cached_tokens": input_details.get("cache_read"),
        "reasoning_tokens": output_details.get("reasoning"),
    }


def messages_of(stored: Sequence[ItemOrMessage]) -> list[BaseMessage]:
    """LangChain messages for stored ones: our own items (`message_to_dict` form, as
    `store.last_items` returns them, or carried by a `Message`), else rebuilt from the
    projection."""
    result: list[BaseMessage] = []
    items: list[dict[str, Any]] = []  # consecutive items, converted in one call
    for entry in stored:
        if isinstance(entry, Message):
            if entry.item is not None and entry.item_format == ITEM_FORMAT:
                items.append(entry.item)
                continue
            if items:
                result.extend(messages_from_dict(items))
                items = []
            if entry.is_chat:
                result.append(_from_projection(entry))
        elif entry is not None:
            items.append(entry)
    if items:
        result.extend(messages_from_dict(items))
    return result


def _from_projection(message: Message) -> BaseMessage:
    if message.role is Role.USER:
        return HumanMessage(content=message.content, name=message.name)
    if message.role is Role.SYSTEM:
        return SystemMessage(content=message.content, name=message.name)
    if message.role is Role.TOOL:
        return ToolMessage(content=message.content, tool_call_id=message.tool_call_id or "")
    calls = [
        tool_call(name=call.function.name, args=_args(call.function.arguments), id=call.id)
        for call in message.tool_calls or ()
    ]
    return AIMessage(content=message.content, name=message.name, tool_calls=calls)


def _args(arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments) if arguments else {}
    except ValueError:
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"arguments": value}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    texts: list[str] = []
    for block in content or ():
        if isinstance(block, str):
            texts.append(block)
        elif isinstance(block, dict) and isinstance(block.get("text"), str):
            texts.append(block["text"])
    return "\n".join(texts)
