"""Server-side operations on the end of a conversation: the exact last N messages, pop, clear.

What framework session backends need (e.g. the OpenAI Agents SDK's `get_items(limit)`,
`pop_item()`, `clear_session()`), each without loading the whole session. Like `append`,
they work on the stored rows directly and never conflict; the version they bump makes
every cached copy of the session reload.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlsessions import statements as sql
from sqlsessions.models import Message, Role, check_session_id
from sqlsessions.operations import Operation, Steps, Transaction, utcnow
from sqlsessions.queries import check_limit
from sqlsessions.scope import Scope
from sqlsessions.steps import close_snapshot, open_snapshot

ALL = 2**62
"""The row limit that means "every message" (both dialects take it as an integer)."""

ASSISTANT = Role.ASSISTANT.value


def last_messages(
    dialect: str, scope: Scope, session_id: str, limit: int | None = None
) -> Operation[list[Any]]:
    """The last `limit` messages (all when None) in order, exactly: unlike `history`, the window
    is not widened or narrowed around tool results. An absent or expired session has none."""
    check_session_id(session_id)
    if limit is not None:
        check_limit(limit)

    def steps(tx: Transaction) -> Steps[list[Message]]:
        params = {"sid": session_id, "now": utcnow(), "limit": ALL if limit is None else limit}
        params.update(scope.params)
        yield from open_snapshot(dialect)  # the messages and their tool calls agree
        rows = list(reversed((yield sql.select_tail, params).all()))
        messages = yield from _with_tool_calls(session_id, scope, rows)
        yield from close_snapshot(dialect)
        return messages

    return Operation(steps, autocommit=dialect == "postgresql", snapshot=True, direct=True)


def pop(scope: Scope, session_id: str, ttl: timedelta | None) -> Operation[Message | None]:
    """Remove the last message of a live session and return it (None when there is none)."""
    check_session_id(session_id)

    def steps(tx: Transaction) -> Steps[Message | None]:
        now = utcnow()
        head = (
            yield sql.lock_live_session, {"sid": session_id, "now": now, **scope.params}
        ).first()
        if head is None:
            return None
        params = {"sid": session_id, "before_seq": head.last_seq + 1, "limit": 1, **scope.params}
        rows = (yield sql.select_last_messages, params).all()
        if not rows:
            return None
        popped = yield from _with_tool_calls(session_id, scope, rows)
        yield sql.delete_message, {"sid": session_id, "seq": rows[0].seq, **scope.params}
        yield from _bookkeeping(session_id, scope, 1, ttl, now)
        return popped[0]

    return Operation(steps, writes=True, direct=True)


def clear(scope: Scope, session_id: str, ttl: timedelta | None) -> Operation[int]:
    """Remove every message of a live session (metadata stays); returns how many."""
    check_session_id(session_id)

    def steps(tx: Transaction) -> Steps[int]:
        now = utcnow()
        head = (
            yield sql.lock_live_session, {"sid": session_id, "now": now, **scope.params}
        ).first()
        if head is None:
            return 0
        removed = (yield sql.delete_all_messages, {"sid": session_id, **scope.params}).rowcount
        if removed:
            yield from _bookkeeping(session_id, scope, removed, ttl, now)
        return int(removed)

    return Operation(steps, writes=True, direct=True)


def _bookkeeping(
    session_id: str, scope: Scope, removed: int, ttl: timedelta | None, now: Any
) -> Steps[None]:
    expires_at = None if ttl is None else now + ttl
    params = {"sid": session_id, "removed": removed, "now": now, "expires_at": expires_at}
    yield sql.update_session_after_removal, {**params, **scope.params}


def _with_tool_calls(session_id: str, scope: Scope, rows: list[Any]) -> Steps[list[Message]]:
    """Messages for `rows` (oldest first), their tool calls read only if one may have any."""
    if not rows:
        return []
    call_rows: list[Any] = []
    if any(row.role == ASSISTANT for row in rows):
        params = {"sid": session_id, "from_seq": rows[0].seq, "to_seq": rows[-1].seq}
        params.update(scope.params)
        call_rows = (yield sql.select_tool_calls_between, params).all()
    _, messages = sql.messages_from_rows(rows, call_rows)
    return messages
