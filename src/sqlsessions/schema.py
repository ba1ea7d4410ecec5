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
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

# Re-exported: the one canonical JSON encoder lives with the validation rules.
from sqlsessions.validation import CHAT_KIND as CHAT_KIND
from sqlsessions.validation import json_text as json_text
from sqlsessions.validation import numeric_safe_json_text

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


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp, always UTC in Python; stored as naive UTC text on SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        elif value.tzinfo is not timezone.utc:
            value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

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


class NullableJSONText(JSONText):
    """`JSONText` where Python None is SQL NULL (not the JSON text `null`)."""

    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:  # type: ignore[override]
        return None if value is None else json_text(value)


class ExactJSONB(TypeDecorator[Any]):
    """JSONB whose every number reads back with its Python type (see numeric_safe_json_text);
    Python None is SQL NULL."""

    impl = JSONB(none_as_null=True)
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Any:
        if dialect.driver != "psycopg":  # pragma: no cover - psycopg is the driver we ship
            return super().bind_processor(dialect)
        from psycopg.types.json import Jsonb

        def process(value: Any) -> Any:
            return None if value is None else Jsonb(value, dumps=numeric_safe_json_text)

        return process


NullableJSONValue: Any = (
    JSON(none_as_null=True)
    .with_variant(ExactJSONB(), "postgresql")
    .with_variant(NullableJSONText(), "sqlite")
)
"""An optional JSON document (`JSONValue` whose None is SQL NULL): a framework's raw item."""

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(255), primary_key=True),
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
    Index(
        "ix_sessions_expires_at",
        "expires_at",
        postgresql_where=text("expires_at IS NOT NULL"),
        sqlite_where=text("expires_at IS NOT NULL"),
    ),
    # Keyset pagination of list_sessions, overall and per agent (newest update first).
    Index("ix_sessions_updated_at_id", "updated_at", "id"),
    Index("ix_sessions_agent_id_updated_at_id", "agent_id", "updated_at", "id"),
)

messages = Table(
    "messages",
    metadata,
    Column(
        "session_id",
        String(255),
        ForeignKey("sessions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("seq", BigInteger(), primary_key=True, autoincrement=False),
    Column("role", String(16), nullable=False),
    Column("content", Text(), nullable=False),
    Column("name", Text(), nullable=True),
    Column("tool_call_id", Text(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    # The idempotency key of the append call that wrote this message (first message only).
    Column("append_key", String(64), nullable=True),
    # 'message' for a chat message; another kind (e.g. 'reasoning') for a framework item
    # that is kept in order but is not counted as a message by the analytics views.
    Column("kind", String(32), nullable=False, server_default=text("'message'")),
    # The framework's original item, verbatim, and the name of its format.
    Column("item_format", Text(), nullable=True),
    Column("item", NullableJSONValue, nullable=True),
    CheckConstraint("role IN ('system', 'user', 'assistant', 'tool')", name="role"),
    Index(
        "ix_messages_session_id_append_key",
        "session_id",
        "append_key",
        unique=True,
        postgresql_where=text("append_key IS NOT NULL"),
        sqlite_where=text("append_key IS NOT NULL"),
    ),
)

tool_calls = Table(
    "tool_calls",
    metadata,
    Column("session_id", String(255), primary_key=True),
    Column("message_seq", BigInteger(), primary_key=True, autoincrement=False),
    Column("idx", Integer(), primary_key=True, autoincrement=False),
    Column("call_id", Text(), nullable=False),
    Column("type", Text(), nullable=False),
    Column("function_name", Text(), nullable=False),
    Column("arguments", Text(), nullable=False),
    ForeignKeyConstraint(
        ["session_id", "message_seq"],
        ["messages.session_id", "messages.seq"],
        ondelete="CASCADE",
    ),
    Index("ix_tool_calls_function_name", "function_name"),
)

session_metadata = Table(
    "session_metadata",
    metadata,
    Column(
        "session_id",
        String(255),
        ForeignKey("sessions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("key", Text(), primary_key=True),
    Column("value", JSONValue, nullable=False),
)

TABLES = (sessions, messages, tool_calls, session_metadata)


def metadata_for_schema(schema: str | None) -> MetaData:
    """The table metadata, placed in `schema` (None: the database's default schema)."""
    if schema is None:
        return metadata
    placed = MetaData(naming_convention=metadata.naming_convention)
    for table in metadata.sorted_tables:
        table.to_metadata(placed, schema=schema)
    return placed
