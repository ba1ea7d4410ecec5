"""Every SQL statement sqlsessions runs, and the row <-> model mapping, written once.

Statements are SQLAlchemy Core constructs with named bind parameters, built once at
import time (no engine involved) so SQLAlchemy's compiled cache serves them; the
sync and async stores execute exactly these.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Delete,
    Insert,
    Integer,
    Select,
    Text,
    Update,
    bindparam,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Row

from sqlsessions.models import Message, Role, ToolCall, ToolFunction
from sqlsessions.schema import messages, session_metadata, sessions, tool_calls

S = sessions.c
M = messages.c
T = tool_calls.c
D = session_metadata.c


def live(now_param: str = "now") -> Any:
    """The condition that a session row has not expired."""
    return or_(S.expires_at.is_(None), S.expires_at > bindparam(now_param))


# --- reads -----------------------------------------------------------------------------

SESSION_COLUMNS = (
    S.id,
    S.agent_id,
    S.created_at,
    S.updated_at,
    S.expires_at,
    S.version,
    S.rewrite_version,
    S.last_seq,
    S.message_count,
)

select_live_session: Select[Any] = select(*SESSION_COLUMNS).where(S.id == bindparam("sid"), live())
"""The session row, if it exists and has not expired."""

select_session_head: Select[Any] = select(
    S.version, S.rewrite_version, S.last_seq, S.updated_at, S.expires_at
).where(S.id == bindparam("sid"), live())
"""The cheap primary-key lookup that validates a cached session."""

select_messages_after: Select[Any] = (
    select(M.seq, M.role, M.content, M.name, M.tool_call_id)
    .where(M.session_id == bindparam("sid"), M.seq > bindparam("after_seq"))
    .order_by(M.seq)
)

select_tool_calls_after: Select[Any] = (
    select(T.message_seq, T.call_id, T.type, T.function_name, T.arguments)
    .where(T.session_id == bindparam("sid"), T.message_seq > bindparam("after_seq"))
    .order_by(T.message_seq, T.idx)
)

select_metadata: Select[Any] = (
    select(D.key, D.value).where(D.session_id == bindparam("sid")).order_by(D.key)
)

select_live_ids: Select[Any] = select(S.id).where(live()).order_by(S.id)

# --- writes ----------------------------------------------------------------------------

insert_message: Insert = insert(messages)
insert_tool_call: Insert = insert(tool_calls)
delete_metadata_key: Delete = delete(session_metadata).where(
    D.session_id == bindparam("sid"), D.key == bindparam("key")
)

delete_messages_outside: Delete = delete(messages).where(
    M.session_id == bindparam("sid"),
    or_(M.seq < bindparam("keep_from"), M.seq > bindparam("keep_to")),
)
"""Drops every message outside the kept range [keep_from, keep_to] (tool calls cascade)."""

delete_session: Delete = delete(sessions).where(S.id == bindparam("sid"))

delete_expired_session: Delete = delete(sessions).where(
    S.id == bindparam("sid"), S.expires_at.is_not(None), S.expires_at <= bindparam("now")
)

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
        S.id == bindparam("sid"),
        S.version == bindparam("expected_version"),
        S.created_at == bindparam("expected_created_at"),
        live(),
    )
    .values(**{name: bindparam(f"v_{name}") for name in SESSION_WRITE_COLUMNS})
)
"""The optimistic-concurrency write: lands only if nobody changed the row since it was read."""

touch_session: Update = (
    update(sessions)
    .where(S.id == bindparam("sid"), live())
    .values(expires_at=bindparam("v_expires_at"))
)


def insert_session_if_absent(dialect: str) -> Insert:
    """INSERT of a new session row that does nothing if the id is taken."""
    stmt = _dialect_insert(dialect, sessions)
    result: Insert = stmt.on_conflict_do_nothing(index_elements=[S.id]).returning(S.id)
    return result


def upsert_metadata(dialect: str) -> Insert:
    """INSERT of a metadata value that replaces the key's previous value."""
    stmt = _dialect_insert(dialect, session_metadata)
    result: Insert = stmt.on_conflict_do_update(
        index_elements=[D.session_id, D.key], set_={"value": stmt.excluded.value}
    )
    return result


def _dialect_insert(dialect: str, table: Any) -> postgresql.Insert | sqlite.Insert:
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


# --- row <-> model mapping ---------------------------------------------------------------


def new_incarnation() -> str:
    """A fresh random token for a newly created session row."""
    return secrets.token_hex(16)



def session_row_params(
    session_id: str,
    *,
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
    session_id: str, first_seq: int, new_messages: Sequence[Message], now: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows for `messages` and `tool_calls` for messages numbered from `first_seq`."""
    rows: list[dict[str, Any]] = []
    call_rows: list[dict[str, Any]] = []
    for seq, message in enumerate(new_messages, start=first_seq):
        rows.append(
            {
                "session_id": session_id,
                "seq": seq,
                "role": message.role.value,
                "content": message.content,
                "name": message.name,
                "tool_call_id": message.tool_call_id,
                "created_at": now,
            }
        )
        for idx, call in enumerate(message.tool_calls or ()):
            call_rows.append(
                {
                    "session_id": session_id,
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
    rows: Iterable[Row[Any]], call_rows: Iterable[Row[Any]]
) -> tuple[list[int], list[Message]]:
    """Rebuild messages (with their tool calls) from rows, without re-validating trusted data."""
    calls_by_seq: defaultdict[int, list[ToolCall]] = defaultdict(list)
    for message_seq, call_id, type_, function_name, arguments in call_rows:  # type: ignore[misc]
        calls_by_seq[message_seq].append(
            ToolCall.model_construct(
                id=call_id,
                type=type_,
                function=ToolFunction.model_construct(name=function_name, arguments=arguments),
            )
        )
    seqs: list[int] = []
    result: list[Message] = []
    for seq, role, content, name, tool_call_id in rows:  # type: ignore[misc]
        calls = calls_by_seq.get(seq)
        seqs.append(seq)
        result.append(
            Message.model_construct(
                role=Role(role),
                content=content,
                name=name,
                tool_call_id=tool_call_id,
                tool_calls=tuple(calls) if calls else None,
            )
        )
    return seqs, result


# --- append: positions assigned inside the database ----------------------------------------


def upsert_session_for_append(dialect: str) -> Insert:
    """Create the session or advance a live one by `n` positions; RETURNING the new last_seq.

    Returns no row when the session exists but has expired (the caller removes it first).
    The row lock this takes serialises concurrent appends to one session.
    """
    stmt = _dialect_insert(dialect, sessions).values(
        id=bindparam("sid"),
        agent_id=literal(""),
        created_at=bindparam("now"),
        updated_at=bindparam("now"),
        expires_at=bindparam("expires_at"),
        version=literal(1),
        rewrite_version=literal(1),
        last_seq=bindparam("n"),
        message_count=bindparam("n"),
    )
    result: Insert = stmt.on_conflict_do_update(
        index_elements=[S.id],
        set_={
            "last_seq": S.last_seq + bindparam("n"),
            "message_count": S.message_count + bindparam("n"),
            "version": S.version + 1,
            "updated_at": bindparam("now"),
            "expires_at": bindparam("expires_at"),
        },
        where=live(),
    ).returning(S.last_seq, S.version)
    return result


def append_in_one_statement() -> Select[Any]:
    """PostgreSQL: the whole append (session bookkeeping, messages, tool calls) in one statement.

    Messages and tool calls arrive as parallel arrays (`unnest`), so the statement's text
    does not depend on how many are appended and is compiled once.
    """
    head = upsert_session_for_append("postgresql").cte("head")
    text_array = ARRAY(Text())
    new_messages = (
        func.unnest(
            bindparam("roles", type_=text_array),
            bindparam("contents", type_=text_array),
            bindparam("names", type_=text_array),
            bindparam("tool_call_ids", type_=text_array),
        )
        .table_valued("role", "content", "name", "tool_call_id", with_ordinality="ord")
        .render_derived(name="new_messages")
    )
    first_seq = head.c.last_seq - bindparam("n")
    sid = bindparam("sid", type_=S.id.type)
    message_insert = insert(messages).from_select(
        ["session_id", "seq", "role", "content", "name", "tool_call_id", "created_at"],
        select(
            sid,
            first_seq + new_messages.c.ord,
            new_messages.c.role,
            new_messages.c.content,
            new_messages.c.name,
            new_messages.c.tool_call_id,
            bindparam("now", type_=M.created_at.type),
        )
        .select_from(head)
        .join(new_messages, true()),
    )
    new_calls = (
        func.unnest(
            bindparam("call_positions", type_=ARRAY(BigInteger())),
            bindparam("call_indexes", type_=ARRAY(Integer())),
            bindparam("call_ids", type_=text_array),
            bindparam("call_types", type_=text_array),
            bindparam("call_names", type_=text_array),
            bindparam("call_arguments", type_=text_array),
        )
        .table_valued("position", "idx", "call_id", "type", "function_name", "arguments")
        .render_derived(name="new_calls")
    )
    call_insert = insert(tool_calls).from_select(
        ["session_id", "message_seq", "idx", "call_id", "type", "function_name", "arguments"],
        select(
            sid,
            first_seq + new_calls.c.position,
            new_calls.c.idx,
            new_calls.c.call_id,
            new_calls.c.type,
            new_calls.c.function_name,
            new_calls.c.arguments,
        )
        .select_from(head)
        .join(new_calls, true()),
    )
    return select(head.c.last_seq, head.c.version).add_cte(
        message_insert.cte("inserted_messages"), call_insert.cte("inserted_calls")
    )


def append_one_statement() -> Select[Any]:
    """PostgreSQL: append one message without tool calls in one statement, scalar parameters
    (the common case, spared the array encoding of `append_in_one_statement`)."""
    head = upsert_session_for_append("postgresql").cte("head")
    message_insert = insert(messages).from_select(
        ["session_id", "seq", "role", "content", "name", "tool_call_id", "created_at"],
        select(
            bindparam("sid", type_=S.id.type),
            head.c.last_seq,
            bindparam("role", type_=M.role.type),
            bindparam("content", type_=M.content.type),
            bindparam("name", type_=M.name.type),
            bindparam("tool_call_id", type_=M.tool_call_id.type),
            bindparam("now", type_=M.created_at.type),
        ).select_from(head),
    )
    return select(head.c.last_seq, head.c.version).add_cte(message_insert.cte("inserted"))


def append_array_params(new_messages: Sequence[Message]) -> dict[str, list[Any]]:
    """The parallel arrays `append_in_one_statement` takes (positions are 1-based)."""
    params: dict[str, list[Any]] = {
        key: []
        for key in (
            "roles", "contents", "names", "tool_call_ids", "call_positions", "call_indexes",
            "call_ids", "call_types", "call_names", "call_arguments",
        )
    }  # fmt: skip
    for position, message in enumerate(new_messages, start=1):
        params["roles"].append(message.role.value)
        params["contents"].append(message.content)
        params["names"].append(message.name)
        params["tool_call_ids"].append(message.tool_call_id)
        for idx, call in enumerate(message.tool_calls or ()):
            params["call_positions"].append(position)
            params["call_indexes"].append(idx)
            params["call_ids"].append(call.id)
            params["call_types"].append(call.type)
            params["call_names"].append(call.function.name)
            params["call_arguments"].append(call.function.arguments)
    return params


# --- history: the tail of a conversation ----------------------------------------------------

select_last_messages: Select[Any] = (
    select(M.seq, M.role, M.content, M.name, M.tool_call_id)
    .where(M.session_id == bindparam("sid"), M.seq < bindparam("before_seq"))
    .order_by(M.seq.desc())
    .limit(bindparam("limit"))
)
"""The newest `limit` messages before `before_seq`, newest first."""

select_tool_calls_between: Select[Any] = (
    select(T.message_seq, T.call_id, T.type, T.function_name, T.arguments)
    .where(
        T.session_id == bindparam("sid"),
        T.message_seq >= bindparam("from_seq"),
        T.message_seq <= bindparam("to_seq"),
    )
    .order_by(T.message_seq, T.idx)
)

select_live_session_exists: Select[Any] = select(S.last_seq).where(S.id == bindparam("sid"), live())


# --- reaper --------------------------------------------------------------------------------


def reap_batch(dialect: str) -> Delete:
    """Delete up to `batch_size` expired sessions (their rows cascade).

    On PostgreSQL the victims are locked with SKIP LOCKED: reapers running at once take
    disjoint batches, and a session a writer holds (being saved or touched) is skipped;
    the expiry is re-checked on the locked row, so a session just revived is never taken.
    """
    victims = (
        select(S.id)
        .where(S.expires_at.is_not(None), S.expires_at <= bindparam("now"))
        .order_by(S.expires_at)
        .limit(bindparam("batch_size"))
    )
    if dialect == "postgresql":
        victims = victims.with_for_update(skip_locked=True)
    return delete(sessions).where(S.id.in_(victims.scalar_subquery()))
