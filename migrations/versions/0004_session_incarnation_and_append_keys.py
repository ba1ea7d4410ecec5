"""Session incarnations and append idempotency keys.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

- ``sessions.incarnation``: a random token written each time a session row is created.
  A session deleted (or expired) and created again starts over at version 1; the token
  tells the incarnations apart, so a cache never mistakes one for the other. Rows that
  exist before this revision keep the empty token (each is one incarnation).
- ``messages.append_key``: the idempotency key of the ``append`` call that wrote the
  message (on the first message of the call), unique per session, so a retried append
  whose first attempt did commit is recognised instead of written twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from sqlsessions.migration_support import migration_schema, schema_prefix

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # ALTER TABLE is rendered by Alembic itself, outside schema_translate_map: name the schema.
    schema = migration_schema()
    op.add_column(
        "sessions",
        sa.Column("incarnation", sa.String(32), nullable=False, server_default=sa.text("''")),
        schema=schema,
    )
    op.add_column("messages", sa.Column("append_key", sa.String(64), nullable=True), schema=schema)
    op.create_index(
        "ix_messages_session_id_append_key",
        "messages",
        ["session_id", "append_key"],
        unique=True,
        postgresql_where=sa.text("append_key IS NOT NULL"),
        sqlite_where=sa.text("append_key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_messages_session_id_append_key", table_name="messages")
    # Plain ALTER TABLE ... DROP COLUMN on both dialects (SQLite has it since 3.35): a batch
    # "move and copy" on SQLite would trip over the analytics views that read these tables.
    op.execute(f"ALTER TABLE {schema_prefix()}messages DROP COLUMN append_key")
    op.execute(f"ALTER TABLE {schema_prefix()}sessions DROP COLUMN incarnation")
