"""Initial schema: sessions, messages, tool_calls, session_metadata.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("agent_id", sa.String(255), server_default=sa.text("''"), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("rewrite_version", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("message_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
    )
    op.create_index(
        "ix_sessions_expires_at",
        "sessions",
        ["expires_at"],
        postgresql_where=sa.text("expires_at IS NOT NULL"),
        sqlite_where=sa.text("expires_at IS NOT NULL"),
    )
    op.create_table(
        "messages",
        sa.Column("session_id", sa.String(255), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("tool_call_id", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "role IN ('system', 'user', 'assistant', 'tool')", name="ck_messages_role"
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name="fk_messages_session_id_sessions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "seq", name="pk_messages"),
    )
    op.create_table(
        "tool_calls",
        sa.Column("session_id", sa.String(255), nullable=False),
        sa.Column("message_seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("call_id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("function_name", sa.Text(), nullable=False),
        sa.Column("arguments", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id", "message_seq"],
            ["messages.session_id", "messages.seq"],
            name="fk_tool_calls_session_id_message_seq_messages",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "message_seq", "idx", name="pk_tool_calls"),
    )
    op.create_index("ix_tool_calls_function_name", "tool_calls", ["function_name"])
    op.create_table(
        "session_metadata",
        sa.Column("session_id", sa.String(255), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column(
            "value",
            # JSONB on PostgreSQL; TEXT on SQLite, where a JSON column's NUMERIC
            # affinity would rewrite top-level numbers.
            sa.JSON()
            .with_variant(postgresql.JSONB(), "postgresql")
            .with_variant(sa.Text(), "sqlite"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name="fk_session_metadata_session_id_sessions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "key", name="pk_session_metadata"),
    )


def downgrade() -> None:
    op.drop_table("session_metadata")
    op.drop_index("ix_tool_calls_function_name", table_name="tool_calls")
    op.drop_table("tool_calls")
    op.drop_table("messages")
    op.drop_index("ix_sessions_expires_at", table_name="sessions")
    op.drop_table("sessions")
