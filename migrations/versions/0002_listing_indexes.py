"""Indexes for keyset listing of sessions (by update time, overall and per agent).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_sessions_updated_at_id", "sessions", ["updated_at", "id"])
    op.create_index(
        "ix_sessions_agent_id_updated_at_id", "sessions", ["agent_id", "updated_at", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_sessions_agent_id_updated_at_id", table_name="sessions")
    op.drop_index("ix_sessions_updated_at_id", table_name="sessions")
