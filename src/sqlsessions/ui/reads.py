"""What the viewer reads beyond the store API: one page of a conversation, by position.

`Store.get_if_exists` loads a whole session and `history` only its tail; a page of a long
conversation (10,000 messages or more) is read here by message position (seq) with the
store's own statements and row mapping, so opening any page costs one page of rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Select, bindparam, select, tuple_

from sqlsessions import statements as sql
from sqlsessions.engine import is_database_error, wrap_error
from sqlsessions.errors import SessionNotFoundError
from sqlsessions.models import Message, check_session_id
from sqlsessions.operations import Operation, Steps, Transaction, drive_sync, utcnow
from sqlsessions.schema import messages
from sqlsessions.scope import ROOT_SCOPE, Scope

_messages_from: Select[Any] = sql.select_messages_after.limit(bindparam("limit"))
"""The first `limit` messages after `after_seq`, oldest first."""


@dataclass(frozen=True)
class SessionHead:
    """A session's row and metadata, without its messages."""

    id: str
    agent_id: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    version: int
    last_seq: int
    message_count: int
    metadata: dict[str, Any]
    owner: str = ""


@dataclass(frozen=True)
class ConversationPage:
    """Consecutive messages of one session with their positions, oldest first."""

    head: SessionHead
    seqs: list[int]
    messages: list[Message]
    has_earlier: bool
    has_later: bool


def _read_page(
    session_id: str, scope: Scope, after: int | None, before: int | None, limit: int
) -> Steps[ConversationPage]:
    row = (
        yield (
            sql.select_live_session,
            {"sid": session_id, "now": utcnow(), **scope.params},
        )
    ).first()
    if row is None:
        raise SessionNotFoundError(session_id)
    sid = {"sid": session_id, **scope.params}
    metadata = {key: value for key, value in (yield sql.select_metadata, sid)}
    head = SessionHead(
        id=row.id,
        agent_id=row.agent_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        expires_at=row.expires_at,
        version=row.version,
        last_seq=row.last_seq,
        message_count=row.message_count,
        metadata=metadata,
        owner=row.owner,
    )
    if before is not None:
        params = {**sid, "before_seq": before, "limit": limit + 1}
        rows = list(reversed((yield sql.select_last_messages, params).all()))
        has_earlier = len(rows) > limit
        rows = rows[1:] if has_earlier else rows
        has_later = before <= head.last_seq
    else:
        start = after if after is not None else 0
        params = {**sid, "after_seq": start, "limit": limit + 1}
        rows = list((yield _messages_from, params).all())
        has_later = len(rows) > limit
        rows = rows[:limit]
        has_earlier = False
        if rows and start > 0:
            params = {**sid, "before_seq": rows[0].seq, "limit": 1}
            has_earlier = (yield sql.select_last_messages, params).first() is not None
    if not rows:
        return ConversationPage(head, [], [], has_earlier=False, has_later=False)
    calls = yield (
        sql.select_tool_calls_between,
        {**sid, "from_seq": rows[0].seq, "to_seq": rows[-1].seq},
    )
    seqs, messages = sql.messages_from_rows(rows, calls.all())
    return ConversationPage(head, seqs, messages, has_earlier, has_later)


def read_conversation_page(
    engine: Engine,
    session_id: str,
    *,
    after: int | None = None,
    before: int | None = None,
    limit: int = 200,
    scope: Scope = ROOT_SCOPE,
) -> ConversationPage:
    """Up to `limit` messages after position `after` (default: from the start), or the
    `limit` messages before position `before`, of the session in `scope` (default: the
    default owner); SessionNotFoundError if the session is gone."""
    check_session_id(session_id)
    try:
        with engine.connect() as conn, conn.begin():
            page = Operation(lambda tx: _read_page(session_id, scope, after, before, limit))
            return drive_sync(page, conn.execute, Transaction())
    except Exception as exc:
        if not is_database_error(exc):
            raise
        raise wrap_error(exc, engine.url) from exc


def read_message_contents(
    engine: Engine, positions: list[tuple[str, int]], owner: str = ""
) -> dict[tuple[str, int], str]:
    """The content of each message at (session_id, seq) of `owner` in `positions` that still
    exists (the viewer needs it to tell the store's snippet markers from the message's own
    text)."""
    if not positions:
        return {}
    wanted = tuple_(messages.c.session_id, messages.c.seq).in_(positions)
    statement = select(messages.c.session_id, messages.c.seq, messages.c.content).where(
        wanted, messages.c.owner == owner
    )
    try:
        with engine.connect() as conn:
            return {(row.session_id, row.seq): row.content for row in conn.execute(statement)}
    except Exception as exc:
        if not is_database_error(exc):
            raise
        raise wrap_error(exc, engine.url) from exc
