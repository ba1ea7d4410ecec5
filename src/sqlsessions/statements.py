"""Every SQL statement sqlsessions runs, and the row <-> model mapping, written once.

Statements are SQLAlchemy Core constructs with named bind parameters, built once at
import time (no engine involved) so SQLAlchemy's compiled cache serves them; the
sync and async stores execute exactly these.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Delete,
    Insert,
    Integer,
    Select,
    TextClause,
    Update,
    and_,
    any_,
    bindparam,
    delete,
    exists,
    insert,
    literal_column,
    or_,
    select,
    text,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY

from sqlsessions.model_base import trusted_values
from sqlsessions.models import Message, Role, ToolCall, ToolFunction
from sqlsessions.schema import USAGE_FIELDS, messages, session_metadata, sessions, tool_calls

ROLES = {role.value: role for role in Role}
S = sessions.c
M = messages.c
T = tool_calls.c
D = session_metadata.c


def live(now_param: str = "now") -> Any:
    """The condition that a session row has not expired."""
    return or_(S.expires_at.is_(None), S.expires_at > bindparam(now_param))


# --- scope: every statement on a session names its owner (and the scope's agent filter) ----


def owner_param() -> Any:
    """The scope's owner (bind parameter `scope_owner`)."""
    return bindparam("scope_owner", type_=S.owner.type)


def scope_agent_param() -> Any:
    """The scope's agent (bind parameter `scope_agent`; '' when the scope has none)."""
    return bindparam("scope_agent", type_=S.agent_id.type)


def in_scope() -> Any:
    """The condition that a session row is in the scope: the owner's, and the scope's agent's
    when it has one. A row outside the scope is, to every statement, absent."""
    return and_(
        S.owner == owner_param(),
        or_(scope_agent_param() == literal_column("''"), S.agent_id == scope_agent_param()),
    )


def this_session() -> Any:
    """The session row `sid` in the scope."""
    return and_(S.id == bindparam("sid"), in_scope())


def owned_by(table: Any) -> Any:
    """The rows of a per-session table for session `sid` of the scope's owner."""
    return and_(table.c.session_id == bindparam("sid"), table.c.owner == owner_param())


# --- reads -----------------------------------------------------------------------------

SESSION_COLUMNS = (
    S.id,
    S.owner,
    S.agent_id,
    S.created_at,
    S.updated_at,
    S.expires_at,
    S.version,
    S.rewrite_version,
    S.last_seq,
    S.message_count,
    S.incarnation,
)

select_live_session: Select[Any] = select(*SESSION_COLUMNS).where(this_session(), live())
"""The session row, if it exists and has not expired."""

select_session_head: Select[Any] = select(
    S.version, S.rewrite_version, S.last_seq, S.updated_at, S.expires_at, S.incarnation
).where(this_session(), live())
"""The cheap primary-key lookup that validates a cached session (incarnation and version)."""

MESSAGE_COLUMNS = (
    M.seq,
    M.role,
    M.content,
    M.name,
    M.tool_call_id,
    M.kind,
    M.item_format,
    M.item,
    *(M[name] for name in USAGE_FIELDS),
)
"""What a message read selects, in the order `messages_from_rows` unpacks."""

select_messages_after: Select[Any] = (
    select(*MESSAGE_COLUMNS)
    .where(owned_by(messages), M.seq > bindparam("after_seq"))
    .order_by(M.seq)
)

select_tool_calls_after: Select[Any] = (
    select(T.message_seq, T.call_id, T.type, T.function_name, T.arguments)
    .where(owned_by(tool_calls), T.message_seq > bindparam("after_seq"))
    .order_by(T.message_seq, T.idx)
)

select_metadata: Select[Any] = (
    select(D.key, D.value).where(owned_by(session_metadata)).order_by(D.key)
)

select_live_ids: Select[Any] = select(S.id).where(in_scope(), live()).order_by(S.id)

begin_read_snapshot: TextClause = text("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
"""PostgreSQL, on an autocommit connection: the following reads all see one snapshot."""
end_read_snapshot: TextClause = text("COMMIT")
abandon_read_snapshot: TextClause = text("ROLLBACK")
begin_transaction: TextClause = text("BEGIN")
"""PostgreSQL, on an autocommit connection: a transaction the steps end with `end_read_snapshot`."""

# --- writes ----------------------------------------------------------------------------

insert_message: Insert = insert(messages)
insert_tool_call: Insert = insert(tool_calls)
delete_metadata_key: Delete = delete(session_metadata).where(
    owned_by(session_metadata), D.key == bindparam("key")
)

delete_messages_outside: Delete = delete(messages).where(
    owned_by(messages),
    or_(M.seq < bindparam("keep_from"), M.seq > bindparam("keep_to")),
)
"""Drops every message outside the kept range [keep_from, keep_to] (tool calls cascade)."""

delete_session: Delete = delete(sessions).where(this_session())

delete_expired_session: Delete = delete(sessions).where(
    S.id == bindparam("sid"),
    S.owner == owner_param(),
    S.expires_at.is_not(None),
    S.expires_at <= bindparam("now"),
)
"""An expired session of the owner, whatever its agent (it is gone to every scope)."""

select_session_agent: Select[Any] = select(S.agent_id).where(
    S.id == bindparam("sid"), S.owner == owner_param(), live()
)
"""The agent of the owner's live session `sid`, whatever the scope's agent (to tell "absent"
from "held by another agent of this owner" when a create finds the id taken)."""

SESSION_WRITE_COLUMNS = (
    "agent_id",
    "created_at",
    "updated_at",
    "expires_at",
    "version",
    "rewrite_version",
    "last_seq",
    "message_count",
)

update_session_checked: Update = (
    update(sessions)
    .where(
        this_session(),
        S.version == bindparam("expected_version"),
        S.incarnation == bindparam("expected_incarnation"),
        live(),
    )
    .values(**{name: bindparam(f"v_{name}") for name in SESSION_WRITE_COLUMNS})
)
"""The optimistic-concurrency write: lands only if nobody changed the row since it was read
(same incarnation, same version; the incarnation itself is never rewritten)."""

touch_session: Update = (
    update(sessions).where(this_session(), live()).values(expires_at=bindparam("v_expires_at"))
)


def insert_session_if_absent(dialect: str) -> Insert:
    """INSERT of a new session row that does nothing if the id is taken."""
    stmt = _dialect_insert(dialect, sessions)
    result: Insert = stmt.on_conflict_do_nothing(index_elements=[S.id, S.owner]).returning(S.id)
    return result


def upsert_metadata(dialect: str) -> Insert:
    """INSERT of a metadata value that replaces the key's previous value."""
    stmt = _dialect_insert(dialect, session_metadata)
    result: Insert = stmt.on_conflict_do_update(
        index_elements=[D.session_id, D.owner, D.key], set_={"value": stmt.excluded.value}
    )
    return result


def _dialect_insert(dialect: str, table: Any) -> postgresql.Insert | sqlite.Insert:
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


dialect_insert = _dialect_insert
"""The dialect's INSERT construct (with ON CONFLICT support) for `table`."""


# --- row <-> model mapping ---------------------------------------------------------------


def new_incarnation() -> str:
    """A fresh random token for a newly created session row."""
    return secrets.token_hex(16)


def session_row_params(
    session_id: str,
    *,
    owner: str,
    agent_id: str,
    created_at: datetime,
    updated_at: datetime,
    expires_at: datetime | None,
    version: int,
    rewrite_version: int,
    last_seq: int,
    message_count: int,
    incarnation: str | None = None,
) -> dict[str, Any]:
    """Bind parameters for a whole session row (a new incarnation token unless given)."""
    return {
        "incarnation": incarnation or new_incarnation(),
        "id": session_id,
        "owner": owner,
        "agent_id": agent_id,
        "created_at": created_at,
        "updated_at": updated_at,
        "expires_at": expires_at,
        "version": version,
        "rewrite_version": rewrite_version,
        "last_seq": last_seq,
        "message_count": message_count,
    }


def message_rows(
    session_id: str, owner: str, first_seq: int, new_messages: Sequence[Message], now: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows for `messages` and `tool_calls` for messages numbered from `first_seq`."""
    rows: list[dict[str, Any]] = []
    call_rows: list[dict[str, Any]] = []
    for seq, message in enumerate(new_messages, start=first_seq):
        rows.append(
            {
                "session_id": session_id,
                "owner": owner,
                "seq": seq,
                "role": message.role.value,
                "content": message.content,
                "name": message.name,
                "tool_call_id": message.tool_call_id,
                "created_at": now,
                "kind": message.kind,
                "item_format": message.item_format,
                "item": message.item,
                **{name: getattr(message, name) for name in USAGE_FIELDS},
            }
        )
        for idx, call in enumerate(message.tool_calls or ()):
            call_rows.append(
                {
                    "session_id": session_id,
                    "owner": owner,
                    "message_seq": seq,
                    "idx": idx,
                    "call_id": call.id,
                    "type": call.type,
                    "function_name": call.function.name,
                    "arguments": call.function.arguments,
                }
            )
    return rows, call_rows


def messages_from_rows(
    rows: Iterable[Sequence[Any]], call_rows: Iterable[Sequence[Any]]
) -> tuple[list[int], list[Message]]:
    """Rebuild messages (with their tool calls) from rows of `MESSAGE_COLUMNS` and of tool
    calls (message_seq, call_id, type, function_name, arguments), without re-validating
    trusted data: each model is built in bulk (`trusted_values`)."""
    call_rows = list(call_rows)
    functions = trusted_values(
        ToolFunction, [{"name": name, "arguments": arguments} for *_, name, arguments in call_rows]
    )
    calls = trusted_values(
        ToolCall,
        [
            {"id": call_id, "type": type_, "function": function}
            for (_, call_id, type_, _, _), function in zip(call_rows, functions, strict=True)
        ],
    )
    grouped: dict[int, list[ToolCall]] = {}
    for (seq, *_), call in zip(call_rows, calls, strict=True):
        found = grouped.get(seq)
        if found is None:
            grouped[seq] = [call]
        else:
            found.append(call)
    calls_at = {seq: tuple(found) for seq, found in grouped.items()}.get
    rows = list(rows)
    messages = trusted_values(
        Message,
        [
            {
                "role": ROLES[role],
                "content": content,
                "name": name,
                "tool_call_id": tool_call_id,
                "tool_calls": calls_at(seq),
                "kind": kind,
                "item_format": item_format,
                "item": item,
                "model": model,
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cached_tokens": cached_tokens,
                "reasoning_tokens": reasoning_tokens,
            }
            for (
                seq, role, content, name, tool_call_id, kind, item_format, item,
                model, input_tokens, output_tokens, cached_tokens, reasoning_tokens,
            ) in rows
        ],
    )  # fmt: skip
    return [row[0] for row in rows], messages


# --- history: the tail of a conversation ----------------------------------------------------

select_last_messages: Select[Any] = (
    select(*MESSAGE_COLUMNS)
    .where(owned_by(messages), M.seq < bindparam("before_seq"))
    .order_by(M.seq.desc())
    .limit(bindparam("limit"))
)
"""The newest `limit` messages before `before_seq`, newest first."""

select_tool_calls_between: Select[Any] = (
    select(T.message_seq, T.call_id, T.type, T.function_name, T.arguments)
    .where(
        owned_by(tool_calls),
        T.message_seq >= bindparam("from_seq"),
        T.message_seq <= bindparam("to_seq"),
    )
    .order_by(T.message_seq, T.idx)
)

select_live_session_exists: Select[Any] = select(S.last_seq).where(this_session(), live())


# --- reaper --------------------------------------------------------------------------------


def reap_batch(dialect: str) -> Delete:
    """Delete up to `batch_size` expired sessions (their rows cascade).

    On PostgreSQL the victims are locked with SKIP LOCKED: reapers running at once take
    disjoint batches, and a session a writer holds (being saved or touched) is skipped;
    the expiry is re-checked on the locked row, so a session just revived is never taken.
    """
    victims = (
        select(S.id, S.owner)
        .where(S.expires_at.is_not(None), S.expires_at <= bindparam("now"))
        .order_by(S.expires_at)
        .limit(bindparam("batch_size"))
    )
    if dialect == "postgresql":
        victims = victims.with_for_update(skip_locked=True)
    # (id, owner): another owner's live session under the same id is never a victim.
    return delete(sessions).where(tuple_(S.id, S.owner).in_(victims))


# --- tail operations: exact last N, pop, clear ---------------------------------------------

select_tail: Select[Any] = (
    select(*MESSAGE_COLUMNS)
    .join(sessions, and_(S.id == M.session_id, S.owner == M.owner))
    .where(M.session_id == bindparam("sid"), M.owner == owner_param(), in_scope(), live())
    .order_by(M.seq.desc())
    .limit(bindparam("limit"))
)
"""The newest `limit` messages of a live session, newest first (none if absent or expired)."""

_tail = (
    select(*MESSAGE_COLUMNS)
    .where(
        owned_by(messages),
        exists().where(this_session(), live()),  # evaluated once per statement
    )
    .order_by(M.seq.desc())
    .limit(bindparam("limit"))
    .subquery("tail")
)
_CALL_COLUMNS = (T.message_seq, T.call_id, T.type, T.function_name, T.arguments)
_calls_of_each = (
    select(*_CALL_COLUMNS, T.idx)
    .where(owned_by(tool_calls), T.message_seq == _tail.c.seq)
    .lateral("calls")
)
select_tail_with_calls: dict[str, Select[Any]] = {
    # PostgreSQL: one primary-key probe of tool_calls per message (LATERAL), whatever the
    # table statistics say; SQLite (no LATERAL) plans the same probe for the plain join.
    "postgresql": select(*_tail.c, *_calls_of_each.c)
    .select_from(_tail.outerjoin(_calls_of_each, true()))
    .order_by(_tail.c.seq, _calls_of_each.c.idx),
    "sqlite": select(*_tail.c, *_CALL_COLUMNS, T.idx)
    .select_from(
        _tail.outerjoin(tool_calls, and_(owned_by(tool_calls), T.message_seq == _tail.c.seq))
    )
    .order_by(_tail.c.seq, T.idx),
}
"""The newest `limit` messages of a live session with each one's tool calls (a row per call),
oldest first: one statement, so one snapshot, for the usual `history` window."""


def split_tail_with_calls(joined: Iterable[Any]) -> tuple[list[Any], list[Any]]:
    """The message rows and tool-call rows `messages_from_rows` takes, from the joined rows
    of `select_tail_with_calls`."""
    width = len(MESSAGE_COLUMNS)
    rows: list[Any] = []
    call_rows: list[Any] = []
    previous = None
    for row in joined:
        if row[0] != previous:
            rows.append(row[:width])
            previous = row[0]
        if row[width + 1] is not None:  # call_id: NULL when the message has no tool call
            call_rows.append(row[width : width + len(_CALL_COLUMNS)])
    return rows, call_rows


lock_live_session: Select[Any] = select(S.last_seq).where(this_session(), live()).with_for_update()
"""The live session row, locked until the transaction ends (SQLite: its write lock does it)."""

delete_message: Delete = delete(messages).where(owned_by(messages), M.seq == bindparam("seq"))
"""Drops one message (its tool calls cascade)."""

delete_all_messages: Delete = delete(messages).where(owned_by(messages))

update_session_after_removal: Update = (
    update(sessions)
    .where(this_session())
    .values(
        version=S.version + 1,
        # Not an append: a cache must reload instead of catching up.
        rewrite_version=S.version + 1,
        message_count=S.message_count - bindparam("removed", type_=Integer()),
        updated_at=bindparam("now"),
        expires_at=bindparam("expires_at"),
    )
)
"""Bookkeeping after messages were removed server-side (seqs are never reused)."""


select_expired_ids: Select[Any] = (
    select(S.id)
    .where(S.expires_at.is_not(None), S.expires_at <= bindparam("now"))
    .order_by(S.expires_at, S.id)
    .limit(bindparam("batch_size"))
)
"""Citus: up to `batch_size` expired sessions, oldest expiry first, read without locking
(`delete_expired_session` then removes each one with its expiry re-checked)."""

select_shards_of_sessions: TextClause = text(
    "SELECT candidate.id, get_shard_id_for_distribution_column(CAST(:table AS regclass),"
    " candidate.id) AS shard FROM unnest(CAST(:ids AS text[])) AS candidate(id)"
)
"""Citus: the shard holding each of `ids` in the distributed table `table` (computed on the
coordinator from its metadata; no shard is read)."""

delete_expired_sessions_among: Delete = delete(sessions).where(
    S.id == any_(bindparam("ids", type_=ARRAY(S.id.type))),
    S.expires_at.is_not(None),
    S.expires_at <= bindparam("now"),
)
"""The sessions of `ids` that are still expired (a session revived meanwhile is kept)."""

select_citus_extension: TextClause = text(
    "SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus'"
)
"""A row when the PostgreSQL server is a Citus coordinator."""
