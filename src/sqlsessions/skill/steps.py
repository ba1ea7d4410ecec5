"""The tools' logic, written once for `Store` and `AsyncStore` (sans-IO).

Each tool is a generator that yields the store calls it needs (`StoreCall`) and receives
their results (or has their exception thrown in); `run_sync` and `run_async` drive it
against a `Store` or an `AsyncStore`. Arguments arrive already checked (see `specs`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from sqlsessions.errors import ConflictError, InvalidInputError
from sqlsessions.models import Message, Session, format_timestamp
from sqlsessions.queries import SessionPage, SessionSummary
from sqlsessions.skill.specs import MAX_HISTORY_LIMIT, MAX_LIST_LIMIT
from sqlsessions.validation import metadata_problem

CONFLICT_RETRIES = 5


@dataclass(frozen=True)
class StoreCall:
    """One store method call a tool needs: `store.<method>(*args, **kwargs)`."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


ToolSteps = Generator[StoreCall, Any, dict[str, Any]]


def run_sync(steps: ToolSteps, store: Any) -> dict[str, Any]:
    """Drive `steps` against a `Store`."""
    try:
        call = next(steps)
        while True:
            try:
                result = getattr(store, call.method)(*call.args, **call.kwargs)
            except Exception as exc:
                call = steps.throw(exc)
            else:
                call = steps.send(result)
    except StopIteration as stop:
        outcome: dict[str, Any] = stop.value
        return outcome


async def run_async(steps: ToolSteps, store: Any) -> dict[str, Any]:
    """Drive `steps` against an `AsyncStore`."""
    try:
        call = next(steps)
        while True:
            try:
                result = await getattr(store, call.method)(*call.args, **call.kwargs)
            except Exception as exc:
                call = steps.throw(exc)
            else:
                call = steps.send(result)
    except StopIteration as stop:
        outcome: dict[str, Any] = stop.value
        return outcome


def _clamped(requested: int, maximum: int, what: str) -> tuple[int, dict[str, Any]]:
    """(the limit to use, what to add to the result) for a requested limit."""
    if requested <= maximum:
        return requested, {}
    note = f"limit {requested} is above the maximum of {maximum}: at most {maximum} {what}"
    return maximum, {"limit": maximum, "note": note}


# --- the tools ----------------------------------------------------------------------------


def sessions_list(args: dict[str, Any]) -> ToolSteps:
    limit, clamp = _clamped(args["limit"], MAX_LIST_LIMIT, "sessions per page")
    page: SessionPage = yield StoreCall(
        "list_sessions", kwargs={"limit": limit, "cursor": args["cursor"]}
    )
    summaries = [
        {
            "id": item.id,
            "message_count": item.message_count,
            "created_at": format_timestamp(item.created_at),
            "updated_at": format_timestamp(item.updated_at),
        }
        for item in page.sessions
    ]
    return {
        "sessions": summaries,
        "total": len(summaries),
        "next_cursor": page.next_cursor,
        **clamp,
    }


def sessions_history(args: dict[str, Any]) -> ToolSteps:
    limit, clamp = _clamped(args["limit"], MAX_HISTORY_LIMIT, "messages are returned")
    messages: list[Message] = yield StoreCall("history", (args["session_id"],), {"limit": limit})
    summary: SessionSummary = yield StoreCall("session_summary", (args["session_id"],))
    return {
        "session_id": args["session_id"],
        "messages": [_message(message) for message in messages],
        "total": summary.message_count,
        "returned": len(messages),
        **clamp,
    }


def _message(message: Message) -> dict[str, Any]:
    shown: dict[str, Any] = {"role": message.role.value, "content": message.content}
    if message.name:
        shown["name"] = message.name
    if message.tool_calls:
        shown["tool_calls"] = [
            {"id": call.id, "name": call.function.name, "arguments": call.function.arguments}
            for call in message.tool_calls
        ]
    if message.tool_call_id:
        shown["tool_call_id"] = message.tool_call_id
    return shown


def sessions_get(args: dict[str, Any]) -> ToolSteps:
    session: Session = yield StoreCall("get_if_exists", (args["session_id"],))
    return {
        "id": session.id,
        "agent_id": session.agent_id,
        "message_count": len(session.messages),
        "created_at": format_timestamp(session.created_at),
        "updated_at": format_timestamp(session.updated_at),
        "metadata": dict(session.metadata),
    }


def sessions_clear(args: dict[str, Any]) -> ToolSteps:
    session_id = args["session_id"]
    yield StoreCall("touch", (session_id,))  # SessionNotFoundError: clear never creates
    cleared: int = yield StoreCall("clear", (session_id,))
    return {"session_id": session_id, "messages_cleared": cleared, "status": "cleared"}


def sessions_delete(args: dict[str, Any]) -> ToolSteps:
    yield StoreCall("delete", (args["session_id"],))
    return {"session_id": args["session_id"], "status": "deleted"}


def sessions_metadata_set(args: dict[str, Any]) -> ToolSteps:
    session_id, key = args["session_id"], args["key"]
    value = _parse_value(args["value"])
    problem = metadata_problem(key, value)
    if problem is not None:  # before get-or-create: bad input creates nothing
        raise InvalidInputError(*problem)
    for attempt in range(CONFLICT_RETRIES):
        session: Session = yield StoreCall("get", (session_id,))
        session.set_metadata(key, value)
        try:
            yield StoreCall("save", (session,))
        except ConflictError:  # another writer got there first: load again and re-apply
            if attempt == CONFLICT_RETRIES - 1:
                raise
            continue
        break
    return {"session_id": session_id, "key": key, "status": "set"}


def sessions_metadata_get(args: dict[str, Any]) -> ToolSteps:
    session: Session = yield StoreCall("get_if_exists", (args["session_id"],))
    value, found = session.get_metadata(args["key"])
    result: dict[str, Any] = {"session_id": session.id, "key": args["key"]}
    if found:
        result["value"] = value
    result["exists"] = found
    return result


def _parse_value(value: Any) -> Any:
    """A string that is valid JSON becomes that JSON value; anything else stays as given."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return value


TOOL_STEPS: dict[str, Callable[[dict[str, Any]], ToolSteps]] = {
    "sessions_list": sessions_list,
    "sessions_history": sessions_history,
    "sessions_get": sessions_get,
    "sessions_clear": sessions_clear,
    "sessions_delete": sessions_delete,
    "sessions_metadata_set": sessions_metadata_set,
    "sessions_metadata_get": sessions_metadata_get,
}
