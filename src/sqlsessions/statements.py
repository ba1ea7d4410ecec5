"""Every SQL statement sqlsessions runs, and the row <-> model mapping, written once.

Statements are SQLAlchemy Core constructs with named bind parameters, built once at
import time (no engine involved) so SQLAlchemy's compiled cache serves them; the
sync and async stores execute exactly these.
"""

from __future__ import annotations

import json
import secrets
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
    TextClause,
    Update,
    and_,
    any_,
    bindparam,
    case,
    cast,
    column,
    delete,
    exists,
    func,
    insert,
    literal,
    literal_column,
    null,
    or_,
    select,
    text,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY, JSON, JSONB

from sqlsessions.models import Message, Role, ToolCall, ToolFunction, trusted_values
from sqlsessions.schema import USAGE_FIELDS, messages, session_metadata, sessions, tool_calls
from sqlsessions.validation import numeric_safe_json_text

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


def new_append_key() -> str:
    """A fresh idempotency key for one `append` call."""
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


# --- append: positions assigned inside the database ----------------------------------------


MESSAGE_INSERT_COLUMNS = [
    "session_id",
    "owner",
    "seq",
    "role",
    "content",
    "name",
    "tool_call_id",
    "created_at",
    "kind",
    "item_format",
    "item",
    *USAGE_FIELDS,
]


APPENDED_MESSAGE_COLUMNS = (*MESSAGE_INSERT_COLUMNS, "append_key")


def append_key_landed() -> Any:
    """The condition that the append carrying `append_key` already wrote to the session."""
    return exists().where(
        M.session_id == bindparam("sid", type_=S.id.type),
        M.owner == owner_param(),
        M.append_key == bindparam("append_key", type_=M.append_key.type),
    )


select_append_landed: Select[Any] = select(S.last_seq, S.version).where(
    this_session(), live(), append_key_landed()
)
"""The live session's current position, if the append with this key already landed in it."""


def upsert_session_for_append(dialect: str) -> Insert:
    """Create the session or advance a live one by `n` positions; RETURNING the new last_seq.

    Returns no row when the session exists but has expired (the caller removes it first),
    and when the append carrying `append_key` already landed (it writes nothing then).
    A created row gets the fresh `incarnation` token; an advanced row keeps its own.
    The row lock this takes serialises concurrent appends to one session.
    """
    new_row = select(  # in the order of SESSION_WRITE_COLUMNS, then id, owner and incarnation
        scope_agent_param(),
        bindparam("now", type_=S.created_at.type),
        bindparam("now", type_=S.updated_at.type),
        bindparam("expires_at", type_=S.expires_at.type),
        literal(1),
        literal(1),
        bindparam("n", type_=S.last_seq.type),
        bindparam("n", type_=S.message_count.type),
        bindparam("sid", type_=S.id.type),
        owner_param(),
        bindparam("new_incarnation", type_=S.incarnation.type),
    ).where(~append_key_landed())
    stmt = _dialect_insert(dialect, sessions).from_select(
        [*SESSION_WRITE_COLUMNS, "id", "owner", "incarnation"],
        new_row,
    )
    return _or_advance_live_session(stmt)


def _or_advance_live_session(stmt: postgresql.Insert | sqlite.Insert) -> Insert:
    """The append upsert's conflict branch: a live session of the scope advances by `n`
    positions (an expired one, or one of another agent of the owner, is left alone, and no
    row is returned); RETURNING the new last_seq."""
    result: Insert = stmt.on_conflict_do_update(
        index_elements=[S.id, S.owner],
        set_={
            "last_seq": S.last_seq + bindparam("n"),
            "message_count": S.message_count + bindparam("n"),
            "version": S.version + 1,
            "updated_at": bindparam("now"),
            "expires_at": bindparam("expires_at"),
        },
        where=and_(live(), in_scope()),
    ).returning(S.last_seq, S.version)
    return result


def advance_session_for_append() -> Update:
    """Advance the live session `sid` of the scope by `n` positions, unless the append carrying
    `append_key` already landed in it; RETURNING the new last_seq and version (no row when
    the session is absent, expired, another agent's, or the key landed).

    The append's parameters name no column of `sessions` that this does not set: SQLAlchemy
    adds such a parameter to an UPDATE's SET clause (hence `new_incarnation`)."""
    return (
        update(sessions)
        .where(this_session(), live(), ~append_key_landed())
        .values(
            last_seq=S.last_seq + bindparam("n"),
            message_count=S.message_count + bindparam("n"),
            # Inline: an anonymous bind in an UPDATE inside a CTE gets no value from
            # SQLAlchemy's own execution path.
            version=S.version + literal_column("1"),
            updated_at=bindparam("now"),
            expires_at=bindparam("expires_at"),
        )
        .returning(S.last_seq, S.version)
    )


def _append_head(creating: bool) -> Any:
    head = upsert_session_for_append("postgresql") if creating else advance_session_for_append()
    return head.cte("head")


def _advanced_head(head: Any, *writes: Any) -> Select[Any]:
    """The one-statement append's result: the advanced session row; no row when the append
    wrote nothing (its key already landed, or the session is not live here), which the
    caller tells apart with `select_append_landed`. Folding that read in as a second branch
    cost every append its planning (~0.1 ms of server CPU) for the rare retry."""
    return select(head.c.last_seq, head.c.version).add_cte(*writes)


def append_in_one_statement(*, creating: bool = False) -> Select[Any]:
    """PostgreSQL: the whole append (session bookkeeping, messages, tool calls) in one statement.

    It advances a live session of the scope (`advance_session_for_append`); `creating=True`
    builds the variant that also creates the session (`upsert_session_for_append`), which the
    caller runs only when the first wrote nothing: an upsert costs the server more to plan
    and run than the update every later append needs.

    Messages and tool calls arrive as two JSON documents (`append_json_params`), expanded by
    `json_to_recordset`: the statement's text does not depend on how many are appended (it
    is compiled once), and the driver sends two text parameters, where parallel arrays cost
    psycopg a Python loop per element (and, in text, a regex substitution per quote).
    """
    head = _append_head(creating)
    new_messages = (
        func.json_to_recordset(cast(bindparam("rows", type_=Text()), JSON()))
        .table_valued(
            column("ord", BigInteger()),
            *(column(name, Text()) for name in _APPENDED_TEXT_FIELDS),
            *(column(name, BigInteger()) for name in USAGE_FIELDS[1:]),
        )
        .render_derived(name="new_messages", with_types=True)
    )
    first_seq = head.c.last_seq - bindparam("n")
    sid = bindparam("sid", type_=S.id.type)
    owner = owner_param()
    append_key = bindparam("append_key", type_=M.append_key.type)  # on the first message
    message_insert = insert(messages).from_select(
        APPENDED_MESSAGE_COLUMNS,
        select(
            sid,
            owner,
            first_seq + new_messages.c.ord,
            new_messages.c.role,
            new_messages.c.content,
            new_messages.c.name,
            new_messages.c.tool_call_id,
            bindparam("now", type_=M.created_at.type),
            new_messages.c.kind,
            new_messages.c.item_format,
            cast(new_messages.c.item, JSONB()),
            *(new_messages.c[name] for name in USAGE_FIELDS),
            case((new_messages.c.ord == 1, append_key), else_=null()),
        )
        .select_from(head)
        .join(new_messages, true()),
    )
    new_calls = (
        func.json_to_recordset(cast(bindparam("calls", type_=Text()), JSON()))
        .table_valued(
            column("position", BigInteger()),
            column("idx", Integer()),
            *(column(name, Text()) for name in _APPENDED_CALL_FIELDS),
        )
        .render_derived(name="new_calls", with_types=True)
    )
    call_insert = insert(tool_calls).from_select(
        [
            "session_id",
            "owner",
            "message_seq",
            "idx",
            "call_id",
            "type",
            "function_name",
            "arguments",
        ],
        select(
            sid,
            owner,
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
    return _advanced_head(
        head, message_insert.cte("inserted_messages"), call_insert.cte("inserted_calls")
    )


def append_one_statement(*, creating: bool = False) -> Select[Any]:
    """PostgreSQL: append one message without tool calls in one statement, scalar parameters
    (the common case, spared the JSON documents of `append_in_one_statement`; `creating` as
    there)."""
    head = _append_head(creating)
    message_insert = insert(messages).from_select(
        APPENDED_MESSAGE_COLUMNS,
        select(
            bindparam("sid", type_=S.id.type),
            owner_param(),
            head.c.last_seq,
            bindparam("role", type_=M.role.type),
            bindparam("content", type_=M.content.type),
            bindparam("name", type_=M.name.type),
            bindparam("tool_call_id", type_=M.tool_call_id.type),
            bindparam("now", type_=M.created_at.type),
            bindparam("kind", type_=M.kind.type),
            bindparam("item_format", type_=M.item_format.type),
            bindparam("item", type_=M.item.type),
            *(bindparam(name, type_=M[name].type) for name in USAGE_FIELDS),
            bindparam("append_key", type_=M.append_key.type),
        ).select_from(head),
    )
    return _advanced_head(head, message_insert.cte("inserted"))


_APPENDED_TEXT_FIELDS = (
    "role", "content", "name", "tool_call_id", "kind", "item_format", "item", "model",
)  # fmt: skip
_APPENDED_CALL_FIELDS = ("call_id", "type", "function_name", "arguments")


def append_json_params(new_messages: Sequence[Message]) -> dict[str, str]:
    """The two JSON documents `append_in_one_statement` takes: a record per message (its
    1-based position `ord`, item as JSON text) and per tool call (its message's position)."""
    rows: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for position, message in enumerate(new_messages, start=1):
        rows.append(
            {
                "ord": position,
                "role": message.role.value,
                "content": message.content,
                "name": message.name,
                "tool_call_id": message.tool_call_id,
                "kind": message.kind,
                "item_format": message.item_format,
                "item": None if message.item is None else numeric_safe_json_text(message.item),
                **{name: getattr(message, name) for name in USAGE_FIELDS},
            }
        )
        for idx, call in enumerate(message.tool_calls or ()):
            calls.append(
                {
                    "position": position,
                    "idx": idx,
                    "call_id": call.id,
                    "type": call.type,
                    "function_name": call.function.name,
                    "arguments": call.function.arguments,
                }
            )
    return {"rows": _json_records(rows), "calls": _json_records(calls)}


_json_records = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


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


def upsert_session_values_for_append(dialect: str) -> Insert:
    """`upsert_session_for_append` without its guard against an append key that already
    landed, for Citus (which cannot route that subquery): the caller checks
    `select_append_landed` first, in the same transaction."""
    stmt = _dialect_insert(dialect, sessions).values(
        id=bindparam("sid"),
        owner=owner_param(),
        agent_id=scope_agent_param(),
        created_at=bindparam("now"),
        updated_at=bindparam("now"),
        expires_at=bindparam("expires_at"),
        version=literal(1),
        rewrite_version=literal(1),
        last_seq=bindparam("n"),
        message_count=bindparam("n"),
        incarnation=bindparam("new_incarnation"),
    )
    return _or_advance_live_session(stmt)


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
