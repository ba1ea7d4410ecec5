"""The relational schema: SQLAlchemy table definitions, the single source for migrations' checks."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

# Re-exported: the one canonical JSON encoder lives with the validation rules.
from sqlsessions.validation import CHAT_KIND as CHAT_KIND
from sqlsessions.validation import json_text as json_text
from sqlsessions.validation import jsonb_text

ROLES = ("system", "user", "assistant", "tool")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class _SQLiteTimestampText(sqlite.DATETIME):
    """SQLite's DATETIME, bound as text `UTCDateTime` has already formatted."""

    def bind_processor(self, dialect: Dialect) -> None:
        return None


_SQLITE_TIMESTAMP_TEXT: Any = _SQLiteTimestampText()  # type: ignore[no-untyped-call]


_RECENT_SQLITE_TEXTS: dict[datetime, str] = {}


def _sqlite_text(value: datetime) -> str:
    """The text SQLAlchemy's SQLite DATETIME writes for `value` as UTC
    ("2026-01-02 03:04:05.000006"), formatted in C. A save binds five timestamps, two of
    them seen before (the session's creation time; "now" twice), so recent ones are kept."""
    text = _RECENT_SQLITE_TEXTS.get(value)
    if text is None:
        utc = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value
        text = utc.astimezone(timezone.utc).isoformat(" ", "microseconds")[:26]
        if len(_RECENT_SQLITE_TEXTS) >= 64:
            _RECENT_SQLITE_TEXTS.clear()
        _RECENT_SQLITE_TEXTS[value] = text
    return text


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp, always UTC in Python; stored as naive UTC text on SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_SQLITE_TIMESTAMP_TEXT)
        return dialect.type_descriptor(self.impl)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return _sqlite_text(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        if value.tzinfo is not timezone.utc:
            return value.astimezone(timezone.utc)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class JSONText(TypeDecorator[Any]):
    """JSON kept as canonical text (sorted keys, compact) in a TEXT column.

    Used on SQLite: a column declared JSON there has NUMERIC affinity, which would turn the
    text of a top-level number into an SQLite number (2.0 -> 2, big ints -> floats).
    """

    impl = Text()
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str:
        return json_text(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


JSONValue: Any = JSON().with_variant(JSONB(), "postgresql").with_variant(JSONText(), "sqlite")
"""A metadata value: JSONB on PostgreSQL, JSON text on SQLite."""


def usage_columns() -> list[Column[Any]]:
    """The model that produced a message and its token usage, as the provider reported it."""
    return [
        Column("model", Text(), nullable=True),
        Column("input_tokens", BigInteger(), nullable=True),
        Column("output_tokens", BigInteger(), nullable=True),
        Column("cached_tokens", BigInteger(), nullable=True),
        Column("reasoning_tokens", BigInteger(), nullable=True),
    ]


USAGE_FIELDS = ("model", "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens")


class NullableJSONText(JSONText):
    """`JSONText` where Python None is SQL NULL (not the JSON text `null`)."""

    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:  # type: ignore[override]
        return None if value is None else json_text(value)


class ExactJSONB(TypeDecorator[Any]):
    """JSONB whose every number reads back with its Python type (see `jsonb_text`); Python
    None is SQL NULL."""

    impl = JSONB(none_as_null=True)
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Any:
        if dialect.driver != "psycopg":  # pragma: no cover - psycopg is the driver we ship
            return super().bind_processor(dialect)
        from psycopg.types.json import Jsonb

        def process(value: Any) -> Any:
            return None if value is None else Jsonb(value, dumps=jsonb_text)

        return process


NullableJSONValue: Any = (
    JSON(none_as_null=True)
    .with_variant(ExactJSONB(), "postgresql")
    .with_variant(NullableJSONText(), "sqlite")
)
"""An optional JSON document (`JSONValue` whose None is SQL NULL): a framework's raw item."""


def session_key_columns() -> list[Column[Any]]:
    """`session_id` and `owner`, the leading primary-key columns of a per-session table.

    A session's identity is (owner, id): ids are unique per owner, '' is the default owner.
    Every key still starts with the session id (the Citus distribution column).
    """
    return [
        Column("session_id", String(255), primary_key=True),
        Column("owner", Text(), primary_key=True, server_default=text("''")),
    ]


def session_foreign_key() -> ForeignKeyConstraint:
    """(session_id, owner) -> sessions(id, owner), rows removed with their session."""
    return ForeignKeyConstraint(
        ["session_id", "owner"], ["sessions.id", "sessions.owner"], ondelete="CASCADE"
    )


sessions = Table(
    "sessions",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("owner", Text(), primary_key=True, server_default=text("''")),
    Column("agent_id", String(255), nullable=False, server_default=text("''")),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=True),
    # Bumped by every write that changes content; the optimistic-concurrency token.
    Column("version", BigInteger(), nullable=False),
    # The version of the last write that was not a pure append: a cache holding an
    # older version can catch up by fetching only messages past its last seq.
    Column("rewrite_version", BigInteger(), nullable=False),
    # Highest message seq ever assigned (seqs are never reused, even after trim).
    Column("last_seq", BigInteger(), nullable=False, server_default=text("0")),
    Column("message_count", Integer(), nullable=False, server_default=text("0")),
    # A random token written when the row is created: tells a session from an earlier one
    # deleted (or expired) under the same id, which also started at version 1.
    Column("incarnation", String(32), nullable=False, server_default=text("''")),
    # Lineage of a fork (store.fork): the session it was copied from and the last position
    # copied. Not a foreign key: a fork outlives its parent.
    Column("parent_id", String(255), nullable=True),
    Column("forked_at_seq", BigInteger(), nullable=True),
    Index(
        "ix_sessions_expires_at",
        "expires_at",
        postgresql_where=text("expires_at IS NOT NULL"),
        sqlite_where=text("expires_at IS NOT NULL"),
    ),
    # Keyset pagination of list_sessions within an owner, overall and per agent (newest
    # update first): every listing filters by owner.
    Index("ix_sessions_owner_updated_at_id", "owner", "updated_at", "id"),
    Index("ix_sessions_owner_agent_id_updated_at_id", "owner", "agent_id", "updated_at", "id"),
)

messages = Table(
    "messages",
    metadata,
    *session_key_columns(),
    Column("seq", BigInteger(), primary_key=True, autoincrement=False),
    Column("role", String(16), nullable=False),
    Column("content", Text(), nullable=False),
    Column("name", Text(), nullable=True),
    Column("tool_call_id", Text(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    # The idempotency key of the append call that wrote this message (first message only).
    Column("append_key", String(64), nullable=True),
    *usage_columns(),
    # 'message' for a chat message; another kind (e.g. 'reasoning') for a framework item
    # that is kept in order but is not counted as a message by the analytics views.
    Column("kind", String(32), nullable=False, server_default=text("'message'")),
    # The framework's original item, verbatim, and the name of its format.
    Column("item_format", Text(), nullable=True),
    Column("item", NullableJSONValue, nullable=True),
    CheckConstraint("role IN ('system', 'user', 'assistant', 'tool')", name="role"),
    session_foreign_key(),
    Index(
        "ix_messages_session_id_owner_append_key",
        "session_id",
        "owner",
        "append_key",
        unique=True,
        postgresql_where=text("append_key IS NOT NULL"),
        sqlite_where=text("append_key IS NOT NULL"),
    ),
)

tool_calls = Table(
    "tool_calls",
    metadata,
    *session_key_columns(),
    Column("message_seq", BigInteger(), primary_key=True, autoincrement=False),
    Column("idx", Integer(), primary_key=True, autoincrement=False),
    Column("call_id", Text(), nullable=False),
    Column("type", Text(), nullable=False),
    Column("function_name", Text(), nullable=False),
    Column("arguments", Text(), nullable=False),
    ForeignKeyConstraint(
        ["session_id", "owner", "message_seq"],
        ["messages.session_id", "messages.owner", "messages.seq"],
        ondelete="CASCADE",
    ),
    Index("ix_tool_calls_function_name", "function_name"),
)

session_metadata = Table(
    "session_metadata",
    metadata,
    *session_key_columns(),
    Column("key", Text(), primary_key=True),
    Column("value", JSONValue, nullable=False),
    session_foreign_key(),
)

model_prices = Table(
    "model_prices",
    metadata,
    # Filled by the user (`sqlsessions prices set`, Store.set_model_prices): never by us.
    Column("model", Text(), primary_key=True),
    Column("effective_from", UTCDateTime(), primary_key=True),
    Column("input_per_million", Float(), nullable=False),
    Column("output_per_million", Float(), nullable=False),
    Column("cached_input_per_million", Float(), nullable=True),
)

archived_messages = Table(
    "archived_messages",
    metadata,
    # What store.replace_history replaced: one segment per replacement, the rows as they were.
    *session_key_columns(),
    Column("segment", Integer(), primary_key=True, autoincrement=False),
    Column("seq", BigInteger(), primary_key=True, autoincrement=False),
    Column("role", String(16), nullable=False),
    Column("content", Text(), nullable=False),
    Column("name", Text(), nullable=True),
    Column("tool_call_id", Text(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("kind", String(32), nullable=False, server_default=text("'message'")),
    Column("item_format", Text(), nullable=True),
    Column("item", NullableJSONValue, nullable=True),
    *usage_columns(),
    Column("archived_at", UTCDateTime(), nullable=False),
    session_foreign_key(),
)

archived_tool_calls = Table(
    "archived_tool_calls",
    metadata,
    *session_key_columns(),
    Column("segment", Integer(), primary_key=True, autoincrement=False),
    Column("message_seq", BigInteger(), primary_key=True, autoincrement=False),
    Column("idx", Integer(), primary_key=True, autoincrement=False),
    Column("call_id", Text(), nullable=False),
    Column("type", Text(), nullable=False),
    Column("function_name", Text(), nullable=False),
    Column("arguments", Text(), nullable=False),
    ForeignKeyConstraint(
        ["session_id", "owner", "segment", "message_seq"],
        [
            "archived_messages.session_id",
            "archived_messages.owner",
            "archived_messages.segment",
            "archived_messages.seq",
        ],
        name="fk_archived_tool_calls_archived_messages",
        ondelete="CASCADE",
    ),
)

TABLES = (
    sessions,
    messages,
    tool_calls,
    session_metadata,
    model_prices,
    archived_messages,
    archived_tool_calls,
)


def metadata_for_schema(schema: str | None) -> MetaData:
    """The table metadata, placed in `schema` (None: the database's default schema)."""
    if schema is None:
        return metadata
    placed = MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.sorted_tables:
        table.to_metadata(placed, schema=schema)
    return placed
