"""Google ADK events as sqlsessions messages: the lossless item plus its chat projection.

An ADK ``Event`` is stored verbatim (``Event.model_dump(mode="json", exclude_none=True)``, the
form ADK's own ``DatabaseSessionService`` stores) as the ``item`` of the first message row it
projects to, with ``item_format`` :data:`EVENT_FORMAT`. The projection is what the Go API, the
CLI and the analytics views read:

* text parts (thoughts excluded) become the ``content`` of a ``user`` message (author
  ``"user"``) or an ``assistant`` message named after the authoring agent;
* ``function_call`` parts become that assistant message's ``tool_calls``;
* each ``function_response`` part becomes its own ``tool`` message (``tool_call_id`` = the
  call's id, ``name`` = the function, ``content`` = the response as JSON); the rows after the
  first carry the format name but no item;
* the first row of an event carrying ``usage_metadata`` (a model response) also carries
  its model and token usage (:func:`event_usage`);
* an event with none of these (a state-only event, an agent transfer, an error, a thought
  alone) is one row of kind :data:`CONTROL_KIND`, which the views do not count as a message.

This module only maps JSON; it imports nothing from ADK.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlsessions.models import Message, Role, ToolCall, ToolFunction

EVENT_FORMAT = "google-adk.event"
"""``Message.item_format`` of a row holding (or continuing) an ADK event."""

CONTROL_KIND = "adk_event"
"""``Message.kind`` of an event that carries no chat content (not counted as a message)."""


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _parts(event: dict[str, Any]) -> list[dict[str, Any]]:
    content = event.get("content") or {}
    parts = content.get("parts") or []
    return [part for part in parts if isinstance(part, dict)]


def event_messages(event: dict[str, Any]) -> list[Message]:
    """The message rows an event (its JSON form) is stored as; the first one carries it."""
    event_id = str(event.get("id") or "")
    author = str(event.get("author") or "")
    parts = _parts(event)
    text = "".join(
        part["text"]
        for part in parts
        if isinstance(part.get("text"), str) and not part.get("thought")
    )
    calls = [part["function_call"] for part in parts if isinstance(part.get("function_call"), dict)]
    responses = [
        part["function_response"]
        for part in parts
        if isinstance(part.get("function_response"), dict)
    ]
    rows: list[dict[str, Any]] = []
    if text or calls:
        is_user = author == "user" and not calls
        rows.append(
            {
                "role": Role.USER if is_user else Role.ASSISTANT,
                "content": text,
                "name": None if is_user else author or None,
                "tool_calls": [_tool_call(call, event_id, i) for i, call in enumerate(calls)],
            }
        )
    for i, response in enumerate(responses):
        rows.append(
            {
                "role": Role.TOOL,
                "content": _compact(response.get("response")),
                "name": response.get("name") or None,
                "tool_call_id": _call_id(response, event_id, i),
            }
        )
    if not rows:
        rows.append(
            {
                "role": Role.USER if author == "user" else Role.ASSISTANT,
                "content": str(event.get("error_message") or ""),
                "name": None if author == "user" else author or None,
                "kind": CONTROL_KIND,
            }
        )
    rows[0]["item"] = event
    rows[0].update(event_usage(event))
    return [Message(item_format=EVENT_FORMAT, **row) for row in rows]


def event_usage(event: dict[str, Any]) -> dict[str, Any]:
    """The usage fields of an event that reports usage (one per model response): input =
    ``prompt_token_count`` (cached included), output = candidates + thoughts, cached =
    ``cached_content_token_count``, reasoning = ``thoughts_token_count``, model =
    ``model_version``."""
    usage = event.get("usage_metadata")
    if not isinstance(usage, dict):
        return {}
    thoughts = usage.get("thoughts_token_count")
    candidates = usage.get("candidates_token_count")
    output = None
    if candidates is not None or thoughts is not None:
        output = (candidates or 0) + (thoughts or 0)
    model = event.get("model_version")
    return {
        "model": model if isinstance(model, str) and model else None,
        "input_tokens": usage.get("prompt_token_count"),
        "output_tokens": output,
        "cached_tokens": usage.get("cached_content_token_count"),
        "reasoning_tokens": thoughts,
    }


def _call_id(part: dict[str, Any], event_id: str, index: int) -> str:
    """The call's own id; a model that gives none gets one derived from the event."""
    given = part.get("id")
    return given if isinstance(given, str) and given else f"{event_id}:{index}"


def _tool_call(call: dict[str, Any], event_id: str, index: int) -> ToolCall:
    return ToolCall(
        id=_call_id(call, event_id, index),
        function=ToolFunction(
            name=str(call.get("name") or ""), arguments=_compact(call.get("args") or {})
        ),
    )


def stored_events(messages: Iterable[Message]) -> list[dict[str, Any]]:
    """The event JSON documents among `messages`, in order (continuation rows skipped)."""
    return [
        message.item
        for message in messages
        if message.item is not None and message.item_format == EVENT_FORMAT
    ]


def select_events(
    events: Sequence[dict[str, Any]],
    num_recent_events: int | None,
    after_timestamp: float | None,
) -> Sequence[dict[str, Any]]:
    """ADK's ``GetSessionConfig`` filter: events at or after `after_timestamp`, then the last
    `num_recent_events` of those (None: no limit; 0: none)."""
    if after_timestamp is not None:
        first = len(events)
        while first > 0 and _timestamp(events[first - 1]) >= after_timestamp:
            first -= 1
        events = events[first:]
    if num_recent_events is not None:
        events = events[-num_recent_events:] if num_recent_events else []
    return events


def _timestamp(event: dict[str, Any]) -> float:
    value = event.get("timestamp")
    return float(value) if isinstance(value, (int, float)) else 0.0
