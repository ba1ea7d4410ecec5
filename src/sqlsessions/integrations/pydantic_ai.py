"""pydantic-ai message history in sqlsessions: load and save a run's messages, losslessly.

pydantic-ai has no session backend of its own: you keep ``result.new_messages()`` and pass
the history back as ``message_history``. These functions do that on a store::

    history = load_message_history(store, "chat-1")            # [] for a new conversation
    result = agent.run_sync("hi", message_history=history)
    save_new_messages(store, "chat-1", result.new_messages())   # one atomic append

(``aload_message_history`` / ``asave_new_messages`` for :class:`~sqlsessions.AsyncStore`.)

Each ``ModelMessage`` is stored verbatim (``ModelMessagesTypeAdapter``'s JSON form) as the
``item`` of the first message row it projects to, ``item_format`` :data:`MESSAGE_FORMAT`:

* a ``ModelRequest`` becomes one row per part: ``system-prompt`` -> ``system``,
  ``user-prompt`` -> ``user`` (its text; other content such as images stays in the item only),
  ``tool-return`` -> ``tool`` (``tool_call_id``, ``name`` = the tool), ``retry-prompt`` ->
  ``tool`` when it answers a tool call, else ``user``;
* a ``ModelResponse`` becomes one ``assistant`` row: its text parts as ``content``, its
  ``tool-call`` parts as ``tool_calls`` (thinking and built-in tool parts stay in the item);
* a message with none of these is one row of kind :data:`CONTROL_KIND`, not counted as a
  message by the analytics views;
* a ``ModelResponse``'s first row carries its model and token usage (:func:`response_usage`).

Saving appends with ``store.append`` (positions assigned by the database), so concurrent runs
on one conversation never overwrite each other.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter, ModelRequest, ModelResponse

from sqlsessions.aio import AsyncStore
from sqlsessions.errors import InvalidInputError, SessionNotFoundError
from sqlsessions.models import Message, Role, ToolCall, ToolFunction
from sqlsessions.store import Store

MESSAGE_FORMAT = "pydantic-ai.message"
"""``Message.item_format`` of a row holding (or continuing) a pydantic-ai ``ModelMessage``."""

CONTROL_KIND = "pydantic_ai"
"""``Message.kind`` of a ``ModelMessage`` with no chat content."""


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(piece for piece in value if isinstance(piece, str))
    return _json_or_text(value)


def _json_or_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _request_rows(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for part in parts:
        kind = part.get("part_kind")
        if kind == "system-prompt":
            rows.append({"role": Role.SYSTEM, "content": _text(part.get("content"))})
        elif kind == "user-prompt":
            rows.append({"role": Role.USER, "content": _text(part.get("content"))})
        elif kind == "tool-return" or (kind == "retry-prompt" and part.get("tool_name")):
            rows.append(
                {
                    "role": Role.TOOL,
                    "content": _json_or_text(part.get("content")),
                    "name": part.get("tool_name"),
                    "tool_call_id": part.get("tool_call_id"),
                }
            )
        elif kind == "retry-prompt":
            rows.append({"role": Role.USER, "content": _text(part.get("content"))})
    return rows


def _response_rows(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    text = "".join(part.get("content") or "" for part in parts if part.get("part_kind") == "text")
    calls = [
        ToolCall(
            id=part.get("tool_call_id") or f"call-{index}",
            function=ToolFunction(
                name=part.get("tool_name") or "",
                arguments=part["args"]
                if isinstance(part.get("args"), str)
                else json.dumps(part.get("args") or {}, separators=(",", ":")),
            ),
        )
        for index, part in enumerate(parts)
        if part.get("part_kind") == "tool-call"
    ]
    if not text and not calls:
        return []
    return [{"role": Role.ASSISTANT, "content": text, "tool_calls": calls}]


def message_rows(item: dict[str, Any]) -> list[Message]:
    """The rows one ``ModelMessage`` (its JSON form) is stored as; the first one carries it."""
    parts = [part for part in item.get("parts") or [] if isinstance(part, dict)]
    is_response = item.get("kind") == "response"
    rows = _response_rows(parts) if is_response else _request_rows(parts)
    if not rows:
        rows = [{"role": Role.ASSISTANT if is_response else Role.USER, "kind": CONTROL_KIND}]
    rows[0]["item"] = item
    if is_response:
        rows[0].update(response_usage(item))
    return [Message(item_format=MESSAGE_FORMAT, **row) for row in rows]


def response_usage(item: dict[str, Any]) -> dict[str, Any]:
    """The usage fields of a ``ModelResponse`` (its JSON form): ``usage`` (input includes
    cache reads, output includes reasoning, as pydantic-ai counts them) and ``model_name``."""
    usage = item.get("usage")
    model = item.get("model_name")
    fields: dict[str, Any] = {"model": model if isinstance(model, str) and model else None}
    if not isinstance(usage, dict):
        return fields
    details = usage.get("details")
    reasoning = usage.get("output_reasoning_tokens")
    if not reasoning and isinstance(details, dict):
        reasoning = details.get("reasoning_tokens", reasoning)
    fields.update(
        input_tokens=usage.get("input_tokens"),
        output_tokens=usage.get("output_tokens"),
        cached_tokens=usage.get("cache_read_tokens"),
        reasoning_tokens=reasoning,
    )
    return fields


def to_rows(messages: Sequence[ModelMessage]) -> list[Message]:
    """The message rows for `messages`, in order."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise InvalidInputError("messages", "must be a sequence of pydantic-ai ModelMessage")
    for index, message in enumerate(messages):
        if not isinstance(message, (ModelRequest, ModelResponse)):
            raise InvalidInputError(
                f"messages[{index}]",
                "must be a pydantic-ai ModelRequest or ModelResponse, "
                f"not {type(message).__name__}",
            )
    items = ModelMessagesTypeAdapter.dump_python(list(messages), mode="json")
    return [row for item in items for row in message_rows(item)]


def from_rows(rows: Sequence[Message]) -> list[ModelMessage]:
    """The ``ModelMessage`` list stored in `rows` (rows of other formats are skipped)."""
    items = [row.item for row in rows if row.item is not None and row.item_format == MESSAGE_FORMAT]
    return ModelMessagesTypeAdapter.validate_python(items)


def load_message_history(store: Store, session_id: str) -> list[ModelMessage]:
    """The conversation's messages, ready for ``message_history=`` ([] if it does not exist)."""
    try:
        session = store.get_if_exists(session_id)
    except SessionNotFoundError:
        return []
    return from_rows(session.messages)


def save_new_messages(store: Store, session_id: str, messages: Sequence[ModelMessage]) -> None:
    """Append a run's new messages (``result.new_messages()``) in one atomic append."""
    rows = to_rows(messages)
    if rows:
        store.append(session_id, *rows)


async def aload_message_history(store: AsyncStore, session_id: str) -> list[ModelMessage]:
    """:func:`load_message_history` for an :class:`~sqlsessions.AsyncStore`."""
    try:
        session = await store.get_if_exists(session_id)
    except SessionNotFoundError:
        return []
    return from_rows(session.messages)


async def asave_new_messages(
    store: AsyncStore, session_id: str, messages: Sequence[ModelMessage]
) -> None:
    """:func:`save_new_messages` for an :class:`~sqlsessions.AsyncStore`."""
    rows = to_rows(messages)
    if rows:
        await store.append(session_id, *rows)
