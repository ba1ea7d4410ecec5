"""Compaction without loss: replace a session's messages, keeping the old ones archived.

``replace_history`` swaps a session's whole message list for a new (compacted) one in one
transaction, conflict-checked against the version the caller read; what it replaced moves
to ``archived_messages`` / ``archived_tool_calls`` as a numbered *segment* (1, 2, ... per
session), still queryable and restorable. ``restore_history`` brings a segment back (the
messages it displaces are archived in turn). New positions continue after the session's
last one: a position is never reused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Delete,
    Insert,
    Select,
    Update,
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
    update,
)

from sqlsessions import statements as sql
from sqlsessions.append_operation import as_message
from sqlsessions.errors import ConflictError, InvalidInputError, SessionNotFoundError
from sqlsessions.models import Message, check_session_id
from sqlsessions.operations import Operation, Steps, StoreCore, Transaction, utcnow
from sqlsessions.schema import (
    archived_messages,
    archived_tool_calls,
    messages,
    sessions,
    tool_calls,
)
from sqlsessions.scope import Scope

S = sessions.c
M = messages.c
A = archived_messages.c
AT = archived_tool_calls.c

_ARCHIVED_MESSAGE_COLUMNS = [
    c.name for c in archived_messages.columns if c.name in M and c.name != "session_id"
]
_ARCHIVED_CALL_COLUMNS = [
    c.name for c in archived_tool_calls.columns if c.name in tool_calls.c and c.name != "session_id"
]


@dataclass(frozen=True)
class HistoryReplaced:
    """The outcome of replace_history / restore_history."""

    version: int
    """The session's version after the change (pass it as the next expected_version)."""
    archived_segment: int | None
    """The segment now holding the messages that were replaced (None: there were none)."""


@dataclass(frozen=True)
class ArchivedSegment:
    """One archived segment of a session: its number, size and when it was archived."""

    segment: int
    message_count: int
    archived_at: datetime


def _bump(expected: bool) -> Update:
    """Advance the session row for a rewrite (optionally only at the expected version)."""
    conditions = [sql.this_session(), sql.live()]
    if expected:
        conditions.append(S.version == bindparam("expected_version"))
    return (
        update(sessions)
        .where(*conditions)
        .values(
            version=S.version + 1,
            rewrite_version=S.version + 1,
            last_seq=S.last_seq + bindparam("span"),
            message_count=bindparam("count"),
            updated_at=bindparam("now"),
            expires_at=bindparam("expires_at"),
        )
        .returning(S.last_seq, S.version)
    )


next_segment: Select[Any] = select(func.coalesce(func.max(A.segment), 0) + 1).where(
    sql.owned_by(archived_messages)
)
archive_messages: Insert = insert(archived_messages).from_select(
    ["session_id", "segment", *_ARCHIVED_MESSAGE_COLUMNS, "archived_at"],
    select(
        M.session_id,
        bindparam("segment", type_=A.segment.type),
        *(M[name] for name in _ARCHIVED_MESSAGE_COLUMNS),
        bindparam("now", type_=A.archived_at.type),
    ).where(sql.owned_by(messages)),
)
archive_tool_calls: Insert = insert(archived_tool_calls).from_select(
    ["session_id", "segment", *_ARCHIVED_CALL_COLUMNS],
    select(
        tool_calls.c.session_id,
        bindparam("segment", type_=AT.segment.type),
        *(tool_calls.c[name] for name in _ARCHIVED_CALL_COLUMNS),
    ).where(sql.owned_by(tool_calls)),
)
delete_messages: Delete = delete(messages).where(sql.owned_by(messages))

segment_bounds: Any = select(func.min(A.seq), func.max(A.seq), func.count()).where(
    sql.owned_by(archived_messages), A.segment == bindparam("segment")
)
restore_messages: Insert = insert(messages).from_select(
    ["session_id", *_ARCHIVED_MESSAGE_COLUMNS],
    select(
        A.session_id,
        *(
            (A.seq + bindparam("offset")).label("seq") if name == "seq" else A[name]
            for name in _ARCHIVED_MESSAGE_COLUMNS
        ),
    ).where(sql.owned_by(archived_messages), A.segment == bindparam("segment")),
)
restore_tool_calls: Insert = insert(tool_calls).from_select(
    ["session_id", *_ARCHIVED_CALL_COLUMNS],
    select(
        AT.session_id,
        *(
            (AT.message_seq + bindparam("offset")).label("message_seq")
            if name == "message_seq"
            else AT[name]
            for name in _ARCHIVED_CALL_COLUMNS
        ),
    ).where(sql.owned_by(archived_tool_calls), AT.segment == bindparam("segment")),
)
_session_in_scope = exists().where(S.id == A.session_id, S.owner == A.owner, sql.in_scope())
"""The archive's session is in the scope (archived rows of another agent's session are absent)."""
select_segments: Any = (
    select(A.segment, func.count().label("message_count"), func.max(A.archived_at))
    .where(sql.owned_by(archived_messages), _session_in_scope)
    .group_by(A.segment)
    .order_by(A.segment)
)
select_archived: Select[Any] = (
    select(*(A[c.name] for c in sql.MESSAGE_COLUMNS))
    .where(sql.owned_by(archived_messages), A.segment == bindparam("segment"), _session_in_scope)
    .order_by(A.seq)
)
select_archived_calls: Select[Any] = (
    select(AT.message_seq, AT.call_id, AT.type, AT.function_name, AT.arguments)
    .where(sql.owned_by(archived_tool_calls), AT.segment == bindparam("segment"))
    .order_by(AT.message_seq, AT.idx)
)


def _check_expected(expected_version: Any) -> None:
    if expected_version is None:
        return
    if isinstance(expected_version, bool) or not isinstance(expected_version, int):
        raise InvalidInputError("expected_version", "must be an integer version, or None")


def _check_segment(segment: Any) -> int:
    if isinstance(segment, bool) or not isinstance(segment, int) or segment < 1:
        raise InvalidInputError("segment", "must be a positive integer segment number")
    return segment


def _rewrite_head(
    core: StoreCore, session_id: str, expected_version: int | None, span: int, count: int
) -> Steps[Any]:
    """Advance the session row; SessionNotFoundError / ConflictError if that is refused."""
    now = utcnow()
    params = {
        "sid": session_id,
        "now": now,
        "expires_at": core.expiry(now),
        "span": span,
        "count": count,
        "expected_version": expected_version,
        **core.scope.params,
    }
    head = (yield _bump(expected_version is not None), params).first()
    if head is None:
        exists = (
            yield (
                sql.select_live_session_exists,
                {"sid": session_id, "now": now, **core.scope.params},
            )
        ).first()
        if exists is None:
            raise SessionNotFoundError(session_id)
        raise ConflictError(
            f"session {session_id!r} is no longer at version {expected_version}: "
            "nothing was replaced; load it again and recompute the compacted history"
        )
    return head


def _archive_current(session_id: str, scope: Scope) -> Steps[int | None]:
    """Move every current message (and tool call) of the session into a new segment."""
    owner = {"sid": session_id, "scope_owner": scope.owner}
    segment = int((yield next_segment, owner).scalar())
    params = {**owner, "segment": segment, "now": utcnow()}
    archived = (yield archive_messages, params).rowcount
    if not archived:
        return None
    yield archive_tool_calls, params
    yield delete_messages, owner
    return segment


def replace_history(
    core: StoreCore, session_id: str, new_messages: Any, expected_version: int | None
) -> Operation[HistoryReplaced]:
    """Replace the session's messages with `new_messages`, archiving the old ones."""
    check_session_id(session_id)
    _check_expected(expected_version)
    if isinstance(new_messages, (str, bytes)) or not hasattr(new_messages, "__iter__"):
        raise InvalidInputError("messages", "must be a list of messages")
    replacement = [as_message(m, f"messages[{i}]") for i, m in enumerate(new_messages)]
    n = len(replacement)

    def steps(tx: Transaction) -> Steps[HistoryReplaced]:
        head = yield from _rewrite_head(core, session_id, expected_version, n, n)
        segment = yield from _archive_current(session_id, core.scope)
        yield from _insert(session_id, core.scope, head.last_seq - n + 1, replacement)
        return HistoryReplaced(version=int(head.version), archived_segment=segment)

    return Operation(steps, writes=True)


def _insert(
    session_id: str, scope: Scope, first_seq: int, new_messages: list[Message]
) -> Steps[None]:
    if not new_messages:
        return
    rows, call_rows = sql.message_rows(session_id, scope.owner, first_seq, new_messages, utcnow())
    yield sql.insert_message, rows
    if call_rows:
        yield sql.insert_tool_call, call_rows


def restore_history(
    core: StoreCore, session_id: str, segment: int, expected_version: int | None
) -> Operation[HistoryReplaced]:
    """Make an archived segment the session's messages again (the current ones archived)."""
    check_session_id(session_id)
    _check_segment(segment)
    _check_expected(expected_version)

    def steps(tx: Transaction) -> Steps[HistoryReplaced]:
        first, last, count = (
            yield (
                segment_bounds,
                {"sid": session_id, "segment": segment, "scope_owner": core.scope.owner},
            )
        ).one()
        if not count:
            exists = (
                yield (
                    sql.select_live_session_exists,
                    {"sid": session_id, "now": utcnow(), **core.scope.params},
                )
            ).first()
            if exists is None:
                raise SessionNotFoundError(session_id)
            raise InvalidInputError("segment", f"session {session_id!r} has no segment {segment}")
        head = yield from _rewrite_head(
            core, session_id, expected_version, last - first + 1, int(count)
        )
        archived = yield from _archive_current(session_id, core.scope)
        params = {"sid": session_id, "segment": segment, "offset": head.last_seq - last}
        params["scope_owner"] = core.scope.owner
        yield restore_messages, params
        yield restore_tool_calls, params
        return HistoryReplaced(version=int(head.version), archived_segment=archived)

    return Operation(steps, writes=True)


def archived_segments(
    dialect: str, scope: Scope, session_id: str
) -> Operation[list[ArchivedSegment]]:
    """The archived segments of a session, oldest first."""
    check_session_id(session_id)

    def steps(tx: Transaction) -> Steps[list[ArchivedSegment]]:
        rows = (yield select_segments, {"sid": session_id, **scope.params}).all()
        return [ArchivedSegment(int(s), int(n), at) for s, n, at in rows]

    return Operation(steps, autocommit=dialect == "postgresql")


def archived_history(
    dialect: str, scope: Scope, session_id: str, segment: int
) -> Operation[list[Message]]:
    """The messages of one archived segment, in their original order."""
    check_session_id(session_id)
    _check_segment(segment)

    def steps(tx: Transaction) -> Steps[list[Message]]:
        params = {"sid": session_id, "segment": segment, **scope.params}
        rows = (yield select_archived, params).all()
        calls = (yield select_archived_calls, params).all() if rows else []
        return sql.messages_from_rows(rows, calls)[1]

    return Operation(steps, autocommit=dialect == "postgresql")
