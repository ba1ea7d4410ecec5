"""The append's statements: positions assigned inside the database, exactly once.

PostgreSQL appends in one statement (`append_in_one_statement`, `append_one_statement`);
SQLite and Citus in a short transaction of single-row statements (`upsert_session_for_append`,
`upsert_session_values_for_append`, then the message rows of `statements`).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Insert,
    Integer,
    Select,
    Text,
    Update,
    and_,
    bindparam,
    case,
    cast,
    column,
    exists,
    func,
    insert,
    literal,
    literal_column,
    null,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSON, JSONB

from sqlsessions.models import Message
from sqlsessions.schema import USAGE_FIELDS, messages, sessions, tool_calls
from sqlsessions.statements import (
    SESSION_WRITE_COLUMNS,
    M,
    S,
    dialect_insert,
    in_scope,
    live,
    owner_param,
    scope_agent_param,
    this_session,
)
from sqlsessions.validation import numeric_safe_json_text


def new_append_key() -> str:
    """A fresh idempotency key for one `append` call."""
    return secrets.token_hex(16)


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
    stmt = dialect_insert(dialect, sessions).from_select(
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
    """Advance the live session `sid` of the scope by `n` positions; RETURNING the new last_seq
    and version (no row when the session is absent, expired or another agent's).

    It does not look for the append's key: the statement that uses it also inserts the key,
    and the unique index on (session_id, owner, append_key) fails the whole statement when
    the key already landed; the store then retries with the guarded upsert
    (`upsert_session_for_append`), which writes nothing in that case. The guard's probe
    costs every append ~40 us of server CPU; only a repeated call meets the index.

    The append's parameters name no column of `sessions` that this does not set: SQLAlchemy
    adds such a parameter to an UPDATE's SET clause (hence `new_incarnation`)."""
    return (
        update(sessions)
        .where(this_session(), live())
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

    It advances a live session of the scope (`advance_session_for_append`, unguarded: a key
    that already landed fails it on the unique index); `creating=True` builds the variant
    that also creates the session and writes nothing when the key landed
    (`upsert_session_for_append`), which the caller runs when the first wrote nothing and on
    every retry: an upsert costs the server more to plan and run than the update every
    later append needs.

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


def upsert_session_values_for_append(dialect: str) -> Insert:
    """`upsert_session_for_append` without its guard against an append key that already
    landed, for Citus (which cannot route that subquery): the caller checks
    `select_append_landed` first, in the same transaction."""
    stmt = dialect_insert(dialect, sessions).values(
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
