"""Fork: copy a session (up to a position) into a new one, server-side, in one transaction.

Every row is copied by ``INSERT ... SELECT`` inside the database, so a fork issues the same
few statements whatever the session's length. The copy records its lineage on the new
session row (``parent_id``, ``forked_at_seq``); positions are kept as they were, so
message ``seq`` N of the fork is message N of its parent.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Insert, Select, bindparam, func, insert, select

from sqlsessions import statements as sql
from sqlsessions.errors import ConflictError, InvalidInputError, SessionNotFoundError
from sqlsessions.models import check_session_id
from sqlsessions.operations import (
    Operation,
    Steps,
    StoreCore,
    Transaction,
    dialect_statements,
    utcnow,
)
from sqlsessions.schema import messages, session_metadata, tool_calls

M = messages.c
T = tool_calls.c
D = session_metadata.c

NOT_COPIED = ("session_id", "append_key")
"""Columns a fork writes itself: its own id, and no append keys (those name the parent's
append calls)."""


def _copy_rows(table: Any, where: list[Any]) -> Insert:
    """INSERT INTO table SELECT :new_id, <every other column> FROM table WHERE ..."""
    names = [column.name for column in table.columns if column.name not in NOT_COPIED]
    source = select(
        bindparam("new_id", type_=table.c.session_id.type), *(table.c[n] for n in names)
    ).where(sql.owned_by(table), *where)
    return insert(table).from_select(["session_id", *names], source)


copy_messages: Insert = _copy_rows(messages, [M.seq <= bindparam("at_seq")])
copy_tool_calls: Insert = _copy_rows(tool_calls, [T.message_seq <= bindparam("at_seq")])
copy_metadata: Insert = _copy_rows(session_metadata, [])

count_messages_upto: Select[Any] = select(func.count()).where(
    sql.owned_by(messages), M.seq <= bindparam("at_seq")
)


def fork(core: StoreCore, session_id: str, new_id: str, at_seq: int | None) -> Operation[int]:
    """Copy `session_id` (messages up to and including `at_seq`) into a new `new_id`.

    Returns the number of messages copied. SessionNotFoundError if the source is missing
    or expired; ConflictError if `new_id` is taken by a live session.
    """
    check_session_id(session_id)
    check_session_id(new_id, "new_id")
    if at_seq is not None and (
        isinstance(at_seq, bool) or not isinstance(at_seq, int) or at_seq < 0
    ):
        raise InvalidInputError("at_seq", "must be a non-negative integer position, or None")
    # PostgreSQL: a share lock on the source row holds off writers (each updates the
    # session row first) until the copy commits, so the copy is one consistent state.
    read_source = (
        sql.select_live_session.with_for_update(read=True)
        if core.dialect == "postgresql"
        else sql.select_live_session
    )
    insert_session = dialect_statements(core.dialect)["insert_session"]
    scope = core.scope.params

    def steps(tx: Transaction) -> Steps[int]:
        now = utcnow()
        source = (yield read_source, {"sid": session_id, "now": now, **scope}).first()
        if source is None:
            raise SessionNotFoundError(session_id)
        upto = source.last_seq if at_seq is None else at_seq
        if upto > source.last_seq:
            raise InvalidInputError(
                "at_seq", f"is past the session's last position ({source.last_seq})"
            )
        bounds = {"sid": session_id, "at_seq": upto, **scope}
        count = int((yield count_messages_upto, bounds).scalar())
        yield sql.delete_expired_session, {"sid": new_id, "now": now, **scope}
        row = sql.session_row_params(
            new_id,
            owner=core.scope.owner,
            agent_id=source.agent_id,
            created_at=now,
            updated_at=now,
            expires_at=core.expiry(now),
            version=1,
            rewrite_version=1,
            last_seq=upto,
            message_count=count,
        )
        row.update(parent_id=session_id, forked_at_seq=upto)
        if (yield insert_session, row).first() is None:
            raise ConflictError(f"cannot fork into {new_id!r}: a session with that id exists")
        copy = {**bounds, "new_id": new_id}
        yield copy_messages, copy
        yield copy_tool_calls, copy
        yield copy_metadata, copy
        return count

    return Operation(steps, writes=True)
