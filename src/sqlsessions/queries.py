"""Read-only queries beyond the Go API: paginated session listing and bounded history."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Select, and_, bindparam, exists, or_, select, tuple_

from sqlsessions import statements as sql
from sqlsessions.changes import metadata_as_json
from sqlsessions.errors import InvalidInputError, SessionNotFoundError
from sqlsessions.models import MAX_SESSION_ID_LENGTH, Message, Role, check_session_id, check_text
from sqlsessions.schema import UTCDateTime, session_metadata, sessions
from sqlsessions.scope import Scope
from sqlsessions.steps import (
    Operation,
    Steps,
    Transaction,
    close_snapshot,
    open_snapshot,
    plain_rows,
    utcnow,
)

MAX_PAGE_SIZE = 1000
MAX_HISTORY_LIMIT = 2**31 - 1
"""The largest `limit` `history` accepts (a database integer; any real session is shorter)."""
MAX_CURSOR_LENGTH = 2048
S = sessions.c
D = session_metadata.c


@dataclass(frozen=True)
class SessionSummary:
    """One session in a listing: who, how long, and when."""

    id: str
    agent_id: str
    message_count: int
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    owner: str = ""


@dataclass(frozen=True)
class SessionPage:
    """A page of summaries, most recently updated first; pass `next_cursor` for the next page."""

    sessions: list[SessionSummary]
    next_cursor: str | None


def check_limit(limit: Any, field: str = "limit", maximum: int | None = None) -> int:
    """`limit` if it is a positive integer (at most `maximum`), else InvalidInputError."""
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidInputError(field, f"must be an integer, not {type(limit).__name__}")
    if limit < 1:
        raise InvalidInputError(field, f"must be at least 1, not {limit}")
    if maximum is not None and limit > maximum:
        raise InvalidInputError(field, f"must be at most {maximum}, not {limit}")
    return limit


def encode_cursor(updated_at: datetime, session_id: str) -> str:
    """An opaque cursor for keyset pagination: the last row's (updated_at, id)."""
    raw = json.dumps([updated_at.astimezone(timezone.utc).isoformat(), session_id])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: Any) -> tuple[datetime, str]:
    """The (updated_at, id) inside a cursor; InvalidInputError if it was not ours."""
    problem = InvalidInputError("cursor", "not a cursor returned by list_sessions")
    if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR_LENGTH:
        raise problem
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        updated_at, session_id = json.loads(raw)
        moment = datetime.fromisoformat(updated_at)
        if moment.tzinfo is None:
            raise ValueError("a cursor's timestamp always has its offset")
        moment = moment.astimezone(timezone.utc)
        check_session_id(session_id, "cursor")
    except (ValueError, TypeError, OverflowError, RecursionError, binascii.Error) as exc:
        raise problem from exc
    return moment, session_id


def check_moment(value: Any, field: str) -> datetime | None:
    """`value` (None or a datetime; naive means UTC) as an aware UTC datetime."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidInputError(field, "must be a datetime")
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    try:
        return value.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        raise InvalidInputError(field, "is out of range once converted to UTC") from None


def _listing_statement(
    dialect: str,
    *,
    agent_id: str | None,
    metadata: dict[str, Any] | None,
    updated_after: datetime | None,
    updated_before: datetime | None,
    cursor: tuple[datetime, str] | None,
) -> tuple[Select[Any], dict[str, Any]]:
    stmt = select(
        S.id, S.agent_id, S.message_count, S.created_at, S.updated_at, S.expires_at, S.owner
    ).where(sql.in_scope(), sql.live())
    params: dict[str, Any] = {}
    if agent_id is not None:
        stmt = stmt.where(S.agent_id == bindparam("agent_id"))
        params["agent_id"] = agent_id
    if updated_after is not None:
        stmt = stmt.where(S.updated_at > bindparam("updated_after", type_=UTCDateTime()))
        params["updated_after"] = updated_after
    if updated_before is not None:
        stmt = stmt.where(S.updated_at < bindparam("updated_before", type_=UTCDateTime()))
        params["updated_before"] = updated_before
    for i, (key, text) in enumerate(metadata_as_json(metadata or {}).items()):
        stmt = stmt.where(
            exists().where(
                D.session_id == S.id,
                D.owner == S.owner,
                D.key == bindparam(f"meta_key_{i}"),
                D.value == bindparam(f"meta_value_{i}", type_=D.value.type),
            )
        )
        params[f"meta_key_{i}"] = key
        params[f"meta_value_{i}"] = json.loads(text)
    if cursor is not None:
        after_updated = bindparam("cursor_updated_at", type_=UTCDateTime())
        after_id: Any = bindparam("cursor_id")
        if dialect == "postgresql":  # a row comparison the (updated_at, id) index serves
            stmt = stmt.where(tuple_(S.updated_at, S.id) < tuple_(after_updated, after_id))
        else:
            stmt = stmt.where(
                or_(
                    S.updated_at < after_updated,
                    and_(S.updated_at == after_updated, S.id < after_id),
                )
            )
        params["cursor_updated_at"], params["cursor_id"] = cursor
    stmt = stmt.order_by(S.updated_at.desc(), S.id.desc()).limit(bindparam("page_limit"))
    return stmt, params


def list_sessions(
    dialect: str,
    scope: Scope,
    *,
    agent_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    updated_after: datetime | None = None,
    updated_before: datetime | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> Operation[SessionPage]:
    """A page of live sessions matching every filter given, newest update first."""
    check_limit(limit, maximum=MAX_PAGE_SIZE)
    if agent_id is not None:
        check_text(agent_id, "agent_id", MAX_SESSION_ID_LENGTH)
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidInputError("metadata", "must be a dict of keys to required JSON values")
    updated_after = check_moment(updated_after, "updated_after")
    updated_before = check_moment(updated_before, "updated_before")
    stmt, params = _listing_statement(
        dialect,
        agent_id=agent_id,
        metadata=metadata,
        updated_after=updated_after,
        updated_before=updated_before,
        cursor=decode_cursor(cursor) if cursor else None,
    )

    def steps(tx: Transaction) -> Steps[SessionPage]:
        params.update(now=utcnow(), page_limit=limit + 1, **scope.params)
        rows = (yield stmt, params).all()
        page = [SessionSummary(**row._asdict()) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = page[-1]
            next_cursor = encode_cursor(last.updated_at, last.id)
        return SessionPage(sessions=page, next_cursor=next_cursor)

    return Operation(steps, autocommit=dialect == "postgresql")


select_session_summary: Select[Any] = select(
    S.id, S.agent_id, S.message_count, S.created_at, S.updated_at, S.expires_at, S.owner
).where(sql.this_session(), sql.live())


def session_summary(dialect: str, scope: Scope, session_id: str) -> Operation[SessionSummary]:
    """One live session's summary (as `list_sessions` gives it) from its row alone, without
    reading its messages; SessionNotFoundError when it is absent or expired."""
    check_session_id(session_id)

    def steps(tx: Transaction) -> Steps[SessionSummary]:
        params = {"sid": session_id, "now": utcnow(), **scope.params}
        row = (yield select_session_summary, params).first()
        if row is None:
            raise SessionNotFoundError(session_id)
        return SessionSummary(**row._asdict())

    return Operation(steps, autocommit=dialect == "postgresql")


WIDEN_STEP = 16
TOOL = Role.TOOL.value
SEQ, ROLE = 0, 1  # positions in a row of MESSAGE_COLUMNS


def _window(rows: list[Any], limit: int, *, reached_start: bool) -> list[Any] | None:
    """The last `limit` of `rows` (oldest first), widened back to the caller of a tool result
    it would open on, or with orphan results dropped when no caller survives; None when the
    caller lies before `rows` (read further step by step)."""
    start = max(0, len(rows) - limit)
    if rows[start][1] != TOOL:  # role
        return rows[start:]
    caller = next((i for i in range(start - 1, -1, -1) if rows[i][1] != TOOL), None)
    if caller is not None:
        return rows[caller:]
    if not reached_start:
        return None
    while start < len(rows) and rows[start][1] == TOOL:  # no calling message survives
        start += 1
    return rows[start:]


def history(
    dialect: str, scope: Scope, session_id: str, limit: int = 50
) -> Operation[list[Message]]:
    """The last `limit` messages of a live session, read without loading the rest.

    A window never opens on a tool result: it widens back to the assistant message that
    made the call; if that message is gone (trimmed away), the orphan results are dropped.
    """
    check_session_id(session_id)
    check_limit(limit, maximum=MAX_HISTORY_LIMIT)

    def steps(tx: Transaction) -> Steps[list[Message]]:
        if dialect != "postgresql":  # one transaction, one snapshot, and statements cost no
            return (yield from read_window())  # round trip: plain reads beat the join there
        # The usual window (it does not open on a tool result) comes in one statement, which
        # is one snapshot; otherwise (empty, absent, or to be widened) read step by step.
        wanted = limit + WIDEN_STEP  # room to widen back to a tool result's caller
        params = {"sid": session_id, "now": utcnow(), "limit": wanted, **scope.params}
        rows, call_rows = sql.split_tail_with_calls(
            (yield sql.select_tail_with_calls[dialect], params).all()
        )
        window = _window(rows, limit, reached_start=len(rows) < wanted) if rows else None
        if window is not None:
            first = window[0][0] if window else 0
            return sql.messages_from_rows(window, [c for c in call_rows if c[0] >= first])[1]
        yield from open_snapshot(dialect)  # the head, the window and its calls agree
        messages = yield from read_window()
        yield from close_snapshot(dialect)
        return messages

    owner = {"scope_owner": scope.owner}

    def read_window() -> Steps[list[Message]]:
        now = utcnow()
        params = {"sid": session_id, "now": now, **scope.params}
        head = (yield sql.select_live_session_exists, params).first()
        if head is None:
            raise SessionNotFoundError(session_id)
        # With room to widen back to a tool result's caller, as the one-statement read does.
        wanted = limit + WIDEN_STEP
        params = {"sid": session_id, "before_seq": head.last_seq + 1, "limit": wanted, **owner}
        rows = plain_rows((yield sql.select_last_messages, params))[::-1]
        reached_start = len(rows) < wanted
        window = _window(rows, limit, reached_start=reached_start) if rows else None
        if window is not None:
            rows = window  # else every row read is a tool result: read further back
        while rows and rows[0][ROLE] == TOOL:
            if reached_start:  # no calling message survives: drop the orphan results
                rows = rows[1:]
                continue
            params = {"sid": session_id, "before_seq": rows[0][SEQ], "limit": WIDEN_STEP, **owner}
            earlier = plain_rows((yield sql.select_last_messages, params))[::-1]
            reached_start = len(earlier) < WIDEN_STEP
            caller = next(
                (i for i in reversed(range(len(earlier))) if earlier[i][ROLE] != TOOL), None
            )
            rows = (earlier[caller:] if caller is not None else earlier) + rows
        if not rows:
            return []
        calls = yield (
            sql.select_tool_calls_between,
            {"sid": session_id, "from_seq": rows[0][SEQ], "to_seq": rows[-1][SEQ], **owner},
        )
        _, messages = sql.messages_from_rows(rows, plain_rows(calls))
        return messages

    return Operation(steps, autocommit=dialect == "postgresql", snapshot=True, direct=True)
