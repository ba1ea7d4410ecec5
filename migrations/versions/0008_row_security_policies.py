"""Row-level security policies: each session's rows belong to its owner.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25

PostgreSQL only (SQLite has no row-level security; nothing changes there). One policy,
``sqlsessions_owner_scope``, on each per-session table: a row is visible and writable only
when its ``owner`` equals the transaction's ``sqlsessions.owner`` setting. The policies are
inert until ``sqlsessions db row-security enable`` turns row-level security on for those
tables (see ``sqlsessions.row_security``); the role that owns the tables is never restricted.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from sqlsessions.migration_support import schema_prefix
from sqlsessions.row_security import create_policy_sql, drop_policy_sql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = (
    "sessions",
    "messages",
    "tool_calls",
    "session_metadata",
    "archived_messages",
    "archived_tool_calls",
)
"""The per-session tables at this revision (a later table gets its policy in its own revision)."""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    prefix = schema_prefix()
    for table in TABLES:
        op.execute(create_policy_sql(table, prefix))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    prefix = schema_prefix()
    for table in TABLES:
        op.execute(f'ALTER TABLE {prefix}"{table}" DISABLE ROW LEVEL SECURITY')
        op.execute(drop_policy_sql(table, prefix))
