"""The append operation: messages at positions the database assigns, exactly once.

Written once for both facades, like the rest of `operations` (`StoreCore.append` returns
it); which statements it sends depends on the server (`append_statements`): one call of the
append procedure on PostgreSQL, a short transaction of single-row statements on SQLite and
Citus.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Executable

from sqlsessions import append_statements as append_sql
from sqlsessions import statements as sql
from sqlsessions.errors import ConflictError, InvalidInputError
from sqlsessions.models import Message, check_session_id
from sqlsessions.steps import Operation, Steps, Transaction, utcnow
from sqlsessions.validation import check_text

if TYPE_CHECKING:
    from sqlsessions.operations import StoreCore

MAX_IDEMPOTENCY_KEY_LENGTH = 64


def check_idempotency_key(key: Any) -> str:
    """`key` if it can identify an append (1 to 64 characters), else InvalidInputError."""
    check_text(key, "idempotency_key", MAX_IDEMPOTENCY_KEY_LENGTH)
    if not key:
        raise InvalidInputError("idempotency_key", "must not be empty")
    return str(key)


def as_message(value: Any, field: str) -> Message:
    """`value` as a Message (a Message, or a mapping in the Go JSON form)."""
    if isinstance(value, Message):
        return value
    if isinstance(value, dict):
        try:
            return Message.model_validate(value)
        except InvalidInputError as exc:
            raise InvalidInputError(f"{field}.{exc.field}", exc.reason) from exc
    raise InvalidInputError(field, f"must be a Message, not {type(value).__name__}")


@dataclass(frozen=True)
class AppendStatements:
    """The session-row statements an append may send, built for one dialect (and schema)."""

    call: Executable
    """PostgreSQL: the whole append in one call of the procedure."""
    guarded_upsert: Executable
    """Create or advance the session unless the append's key already landed."""
    advance: Executable
    """Advance a live session (SQLite, without a key to store)."""
    create: Executable
    """Create or advance the session, unguarded (after the key was checked, or none stored)."""


@functools.cache
def append_statements(dialect: str, schema: str | None = None) -> AppendStatements:
    """The append's statements, built once per process for each dialect and schema."""
    return AppendStatements(
        call=append_sql.append_call(schema if dialect == "postgresql" else None),
        guarded_upsert=append_sql.upsert_session_for_append(dialect),
        advance=append_sql.advance_session_for_append(),
        create=append_sql.upsert_session_values_for_append(dialect),
    )


def append_operation(
    core: StoreCore,
    session_id: str,
    messages: tuple[Any, ...],
    idempotency_key: str | None = None,
) -> Operation[int]:
    """Add messages at positions the database assigns; never conflicts. Returns the version.

    Exactly once: the call's key (the caller's, or one made here, once, so that every
    retry of the steps carries the same) is stored on its first message, and an append
    whose key already landed in the session writes nothing and returns its version. (On
    SQLite only the caller's key is stored: see `keyed` below.)
    """
    check_session_id(session_id)
    new_key, new_incarnation = append_sql.new_append_tokens()
    append_key = new_key if idempotency_key is None else check_idempotency_key(idempotency_key)
    new_messages = [as_message(message, f"messages[{i}]") for i, message in enumerate(messages)]
    if not new_messages:
        raise InvalidInputError("messages", "give at least one message to append")
    n = len(new_messages)
    statements = append_statements(core.dialect, core.schema)
    # One call of the append procedure on PostgreSQL; a transaction of single-shard
    # statements on SQLite, on Citus, and before the first use has told which server
    # this is (right on either).
    in_one_call = core.dialect == "postgresql" and core.server_known and not core.citus
    # Citus cannot route the upsert's in-statement guard against a landed key (a subquery
    # whose parameters reach the worker untyped): check the key first, then upsert.
    key_first = core.dialect == "postgresql" and not in_one_call
    # SQLite has no connection to drop between a commit and its reply: an attempt that
    # failed wrote nothing, so a key the store made up would never be looked for. Only
    # the caller's own key is stored (and its index entry and guard paid for) there:
    # without one, the append advances the row and creates it only when that wrote nothing.
    keyed = idempotency_key is not None or core.dialect != "sqlite"
    statement = (
        statements.call
        if in_one_call
        else statements.create
        if key_first
        else statements.guarded_upsert
        if keyed
        else statements.advance
    )
    attempts = 0

    def steps(tx: Transaction) -> Steps[int]:
        nonlocal attempts
        attempts += 1
        now = utcnow()
        params: dict[str, Any] = {
            "sid": session_id,
            "n": n,
            "now": now,
            "expires_at": core.expiry(now),
            "append_key": append_key,
            "new_incarnation": new_incarnation,  # used only if this creates the row
            **core.scope.params,
        }
        if in_one_call:  # everything travels inside the one call
            params.update(append_sql.append_json_params(new_messages))
            # A retry: the key may have landed (a reply lost after commit, or the
            # unguarded first attempt failed on the key's unique index): go straight to
            # the upsert, which writes nothing then.
            params["guarded"] = attempts > 1
        if key_first:
            landed = (yield append_sql.select_append_landed, params).first()
            if landed is not None:
                return int(landed.version)
        row = _advanced((yield statement, params))
        if row is None and statement is statements.advance:
            # No live session advanced: create it (or advance it, if another writer
            # created it meanwhile).
            row = (yield statements.create, params).first()
        if row is None and keyed:  # wrote nothing: did this key land already (a retry)?
            landed = (yield append_sql.select_append_landed, params).first()
            if landed is not None:
                return int(landed.version)
        if row is None:  # expired but not yet reaped: start afresh
            yield sql.delete_expired_session, params
            row = _advanced((yield statements.create if not keyed else statement, params))
        if row is None:
            yield from core.check_not_another_agents(session_id, now)
            raise ConflictError(f"session {session_id!r} could not be revived for append")
        if not in_one_call:
            first_seq = row.last_seq - n + 1
            yield from core.insert_messages(
                session_id, first_seq, new_messages, now, append_key if keyed else None
            )
        return int(row.version)

    return Operation(steps, writes=True, autocommit=in_one_call, direct=True)


def _advanced(result: Any) -> Any:
    """The row (new `last_seq`, `version`) of a statement that advanced the session for an
    append, or None when it wrote nothing: no row, or the append procedure's row of NULLs."""
    row = result.first()
    return None if row is None or row.last_seq is None else row
