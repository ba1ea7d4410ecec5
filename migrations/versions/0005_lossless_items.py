"""Lossless framework items: messages.kind, messages.item_format, messages.item.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25

- ``messages.kind``: ``'message'`` for a chat message (every row before this revision);
  another value (``'reasoning'``, ``'compaction'``, ``'hosted_tool_call'``...) for a framework
  item that is kept in the conversation's order but is not a chat message.
- ``messages.item_format`` and ``messages.item``: the framework's original item, verbatim
  (JSONB on PostgreSQL, canonical JSON text on SQLite), and the name of its format.
- The analytics views are re-created so that their message counts (``session_summary``'s
  per-role and total counts, ``daily_activity.messages``) count chat messages only.

Downgrading drops the three columns (the raw items are lost; every row stays, as a message
with its projected role and text) and restores the views of revision 0003.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from sqlsessions.migration_support import load_revision, migration_schema, schema_prefix

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEWS = ("session_summary", "tool_usage", "daily_activity")

_LIVE = "(s.expires_at IS NULL OR s.expires_at > CURRENT_TIMESTAMP)"

_SESSION_SUMMARY = """
CREATE VIEW {q}session_summary AS
SELECT
    s.id AS session_id,
    s.agent_id AS agent_id,
    COALESCE(m.system_messages, 0) AS system_messages,
    COALESCE(m.user_messages, 0) AS user_messages,
    COALESCE(m.assistant_messages, 0) AS assistant_messages,
    COALESCE(m.tool_messages, 0) AS tool_messages,
    COALESCE(m.total_messages, 0) AS total_messages,
    COALESCE(t.tool_call_count, 0) AS tool_call_count,
    s.created_at AS first_activity,
    s.updated_at AS last_activity,
    s.expires_at AS expires_at
FROM {q}sessions s
LEFT JOIN (
    SELECT
        session_id,
        SUM(CASE WHEN role = 'system' THEN 1 ELSE 0 END) AS system_messages,
        SUM(CASE WHEN role = 'user' THEN 1 ELSE 0 END) AS user_messages,
        SUM(CASE WHEN role = 'assistant' THEN 1 ELSE 0 END) AS assistant_messages,
        SUM(CASE WHEN role = 'tool' THEN 1 ELSE 0 END) AS tool_messages,
        COUNT(*) AS total_messages
    FROM {q}messages
    WHERE kind = 'message'
    GROUP BY session_id
) m ON m.session_id = s.id
LEFT JOIN (
    SELECT session_id, COUNT(*) AS tool_call_count
    FROM {q}tool_calls
    GROUP BY session_id
) t ON t.session_id = s.id
WHERE {live}
"""

_TOOL_USAGE = """
CREATE VIEW {q}tool_usage AS
SELECT day, agent_id, function_name, COUNT(*) AS calls, COUNT(DISTINCT session_id) AS sessions
FROM (
    SELECT {day} AS day, s.agent_id AS agent_id, t.function_name AS function_name,
           t.session_id AS session_id
    FROM {q}tool_calls t
    JOIN {q}messages m ON m.session_id = t.session_id AND m.seq = t.message_seq
    JOIN {q}sessions s ON s.id = t.session_id
    WHERE {live}
) calls
GROUP BY day, agent_id, function_name
"""

_DAILY_ACTIVITY = """
CREATE VIEW {q}daily_activity AS
SELECT day, agent_id, COUNT(DISTINCT session_id) AS sessions, COUNT(*) AS messages
FROM (
    SELECT {day} AS day, s.agent_id AS agent_id, m.session_id AS session_id
    FROM {q}messages m
    JOIN {q}sessions s ON s.id = m.session_id
    WHERE {live} AND m.kind = 'message'
) activity
GROUP BY day, agent_id
"""


def upgrade() -> None:
    schema = migration_schema()
    q = schema_prefix()
    # SQLite checks views on ALTER TABLE: take them down while the table changes.
    _drop_views(q)
    # ALTER TABLE is rendered by Alembic itself, outside schema_translate_map: name the schema.
    op.add_column(
        "messages",
        sa.Column("kind", sa.String(32), nullable=False, server_default=sa.text("'message'")),
        schema=schema,
    )
    op.add_column("messages", sa.Column("item_format", sa.Text(), nullable=True), schema=schema)
    item_type = sa.JSON().with_variant(JSONB(), "postgresql").with_variant(sa.Text(), "sqlite")
    op.add_column("messages", sa.Column("item", item_type, nullable=True), schema=schema)
    dialect = op.get_bind().dialect.name
    day = "date(m.created_at)" if dialect == "sqlite" else "(m.created_at AT TIME ZONE 'UTC')::date"
    for template in (_SESSION_SUMMARY, _TOOL_USAGE, _DAILY_ACTIVITY):
        op.execute(template.format(q=q, day=day, live=_LIVE))


def downgrade() -> None:
    q = schema_prefix()
    _drop_views(q)
    # Plain ALTER TABLE ... DROP COLUMN on both dialects (SQLite has it since 3.35).
    for column in ("item", "item_format", "kind"):
        op.execute(f"ALTER TABLE {q}messages DROP COLUMN {column}")
    _revision_0003().upgrade()  # the views as revision 0003 defines them


def _drop_views(q: str) -> None:
    for view in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {q}{view}")


def _revision_0003() -> ModuleType:
    """Revision 0003's module (its view definitions are the ones a downgrade restores)."""
    return load_revision(Path(__file__).with_name("0003_analytics_views.py"))
