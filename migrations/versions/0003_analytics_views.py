"""Analytics views: session_summary, tool_usage, daily_activity.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

The views are plain SQL over the tables, written for both dialects (only the date
bucketing differs: ``date(ts)`` on SQLite, ``(ts AT TIME ZONE 'UTC')::date`` on
PostgreSQL, so a day is always a UTC calendar day). Each view shows live sessions only:
a session whose ``expires_at`` has passed is absent, as it is from every store read, even
before the reaper deletes it. Columns are documented in docs/analytics.md.

Note for later migrations: SQLite checks views when a table is renamed, so a batch
("move and copy") operation on a table these views read must drop the views first and
re-create them afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from sqlsessions.migration_support import schema_prefix

revision: str = "0003"
down_revision: str | None = "0002"
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
    WHERE {live}
) activity
GROUP BY day, agent_id
"""


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    day = "date(m.created_at)" if dialect == "sqlite" else "(m.created_at AT TIME ZONE 'UTC')::date"
    q = schema_prefix()
    for template in (_SESSION_SUMMARY, _TOOL_USAGE, _DAILY_ACTIVITY):
        op.execute(template.format(q=q, day=day, live=_LIVE))


def downgrade() -> None:
    q = schema_prefix()
    for view in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {q}{view}")
