"""A page of messages arranged for display: each tool call next to its result.

Pure functions over `Message` (no I/O). A tool result whose call is on the same page is
shown inside that call's block instead of again in the flow; one whose call is on an
earlier page stays in the flow. Framework items (`Message.item`, when the installed
version has it) are read with `getattr` so this works with and without them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlsessions.models import Message, Role


@dataclass
class Result:
    """A tool result message, shown next to the call it answers."""

    seq: int
    content: str
    is_error: bool


@dataclass
class Call:
    """A tool call: function, arguments (formatted when they are JSON) and its result."""

    id: str
    name: str
    arguments: str
    result: Result | None = None


@dataclass
class Entry:
    """One message in the flow of the page."""

    seq: int
    role: str
    content: str
    name: str | None
    tool_call_id: str | None
    is_error: bool
    calls: list[Call] = field(default_factory=list)
    item: str | None = None
    item_format: str | None = None
    kind: str = "message"
    """A framework item that is not a chat message (e.g. "reasoning") says what it is."""


def formatted_json(text: str) -> str:
    """`text` indented if it is JSON, else unchanged (arguments are stored as given)."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def looks_like_error(content: str) -> bool:
    """A tool result that reports a failure: "Error..." text or a JSON object with an error."""
    text = content.strip()
    if text[:5].lower() == "error" or text.lower().startswith("exception"):
        return True
    try:
        value = json.loads(text)
    except ValueError:
        return False
    if not isinstance(value, dict):
        return False
    return bool(value.get("error") or value.get("is_error") or value.get("status") == "error")


def _item_text(message: Message) -> tuple[str | None, str | None]:
    item = getattr(message, "item", None)
    if item is None:
        return None, None
    item_format = getattr(message, "item_format", None)
    if isinstance(item, (str, bytes)):
        text = item.decode("utf-8", "replace") if isinstance(item, bytes) else item
        return formatted_json(text), item_format
    try:
        return json.dumps(item, indent=2, ensure_ascii=False, default=str), item_format
    except (TypeError, ValueError):
        return repr(item), item_format


def conversation_entries(seqs: list[int], messages: list[Message]) -> list[Entry]:
    """The entries of one page, in order, with results folded into their calls."""
    calls_by_id: dict[str, Call] = {}
    entries: list[Entry] = []
    for seq, message in zip(seqs, messages, strict=True):
        is_tool = message.role == Role.TOOL
        is_error = is_tool and looks_like_error(message.content)
        if is_tool and message.tool_call_id in calls_by_id:
            call = calls_by_id[message.tool_call_id]
            if call.result is None:
                call.result = Result(seq, formatted_json(message.content), is_error)
                continue
        item, item_format = _item_text(message)
        entry = Entry(
            seq=seq,
            role=message.role.value,
            content=message.content,
            name=message.name,
            tool_call_id=message.tool_call_id,
            is_error=is_error,
            item=item,
            item_format=item_format,
            kind=str(getattr(message, "kind", None) or "message"),
        )
        for tool_call in message.tool_calls or ():
            call = Call(
                tool_call.id, tool_call.function.name, formatted_json(tool_call.function.arguments)
            )
            calls_by_id[tool_call.id] = call
            entry.calls.append(call)
        entries.append(entry)
    return entries
