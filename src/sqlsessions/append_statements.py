"""The append's statements: positions assigned inside the database, exactly once.

PostgreSQL appends in one call of the `sqlsessions_append` procedure (`append_call`;
migration 0010's); SQLite and Citus in a short transaction of single-row
statements (`advance_session_for_append` or `upsert_session_for_append`, or
`upsert_session_values_for_append`, then the message rows of `statements`).
"""

from __future__ import annotations

import operator
import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Insert,
    Select,
    TextualSelect,
    Update,
    and_,
    bindparam,
    column,
    exists,
    literal,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from sqlsessions.models import Message
from sqlsessions.schema import USAGE_FIELDS, sessions
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
from sqlsessions.validation import jsonb_text


def new_append_tokens() -> tuple[str, str]:
    """A fresh idempotency key and a fresh incarnation token (for the session row, should the
    append create it) for one `append` call, from one read of the OS's random source."""
    tokens = secrets.token_hex(32)
    return tokens[:32], tokens[32:]


# --- append: positions assigned inside the database ----------------------------------------


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

    SQLite's append when it stores no key (a key the store made up: see `StoreCore.append`):
    no guard against a landed key to evaluate, and the upsert
    (`upsert_session_values_for_append`) runs only when this advanced nothing.

    The append's parameters name no column of `sessions` that this does not set: SQLAlchemy
    adds such a parameter to an UPDATE's SET clause (hence `new_incarnation`)."""
    return (
        update(sessions)
        .where(this_session(), live())
        .values(
            last_seq=S.last_seq + bindparam("n"),
            message_count=S.message_count + bindparam("n"),
            version=S.version + literal_column("1"),
            updated_at=bindparam("now"),
            expires_at=bindparam("expires_at"),
        )
        .returning(S.last_seq, S.version)
    )


def append_call(schema: str | None = None) -> TextualSelect:
    """PostgreSQL: the whole append (session bookkeeping, messages, tool calls) in one
    `CALL` of the `sqlsessions_append` procedure, which migration 0010 creates (0009 made it a
    function; both document it): it advances the live session (or, when none advanced or
    `guarded`, upserts it unless the append's key already landed), inserts the messages and
    tool calls, and returns one row: the new `last_seq` and `version`, both NULL when it
    wrote nothing.

    A procedure because its plans live as long as the server connection and a `CALL` is not
    planned at all: the store sends no server-side prepared statements (they break behind a
    transaction-mode pooler), and the statement this replaced was parsed and planned on
    every call. Messages and tool calls arrive as two JSONB documents (`append_json_params`).
    `schema` names the procedure's schema when the tables live in one
    (`StoreConfig.schema`: a schema translate map does not reach routine names)."""
    name = f'"{schema}".sqlsessions_append' if schema else "sqlsessions_append"
    # Untyped parameters: SQLAlchemy would cast each typed one in the SQL (`$1::VARCHAR`),
    # ~15 us of server time per call here; psycopg sends each value with its own type and
    # the procedure's signature does the rest. The two documents are text, read as json.
    return text(
        f"CALL {name}(:sid, :scope_owner, :scope_agent, :n, :now, :expires_at, :append_key,"
        " :new_incarnation, CAST(:rows AS jsonb), CAST(:calls AS jsonb), :guarded)"
    ).columns(column("last_seq", BigInteger()), column("version", BigInteger()))


_APPEND_ROW = operator.attrgetter(
    "role", "content", "name", "tool_call_id", "kind", "item_format", "item", *USAGE_FIELDS
)
"""A message as the append procedure reads it, by position (migration 0010)."""


def append_json_params(new_messages: Sequence[Message]) -> dict[str, str]:
    """The two JSONB documents `append_call` takes: an array per message (the fields of
    `_APPEND_ROW`, in order; its item as JSON, not as text) and per tool call (its message's
    1-based position, its index, id, type, function name and arguments)."""
    calls = [
        (position, idx, call.id, call.type, call.function.name, call.function.arguments)
        for position, message in enumerate(new_messages, start=1)
        if message.tool_calls
        for idx, call in enumerate(message.tool_calls)
    ]
    return {"rows": jsonb_text(list(map(_APPEND_ROW, new_messages))), "calls": jsonb_text(calls)}


def upsert_session_values_for_append(dialect: str) -> Insert:
    """`upsert_session_for_append` without its guard against an append key that already
    landed: for Citus (which cannot route that subquery; the caller checks
    `select_append_landed` first, in the same transaction), and for SQLite's append that
    stores no key, after `advance_session_for_append` advanced nothing."""
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
