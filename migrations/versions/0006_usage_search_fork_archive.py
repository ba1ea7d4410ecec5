"""Usage and cost, full-text search, fork lineage, archived history.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

- ``messages``: ``model``, ``input_tokens``, ``output_tokens``, ``cached_tokens``,
  ``reasoning_tokens`` (all nullable: what the provider reported, if anything).
- ``model_prices``: prices per million tokens that the user fills (never the library), each
  effective from a moment; ``message_costs`` and ``usage_daily`` views price usage with
  the row in effect when the message was written.
- ``sessions.parent_id`` / ``forked_at_seq``: a fork's lineage (``store.fork``).
- ``archived_messages`` / ``archived_tool_calls``: what ``store.replace_history`` replaced,
  one segment at a time, keyed by (session_id, segment, ...).
- Full-text search over ``messages.content``: on PostgreSQL a stored generated column
  ``search_vector`` = ``to_tsvector('simple', content)`` with a GIN index; on SQLite an
  FTS5 external-content table ``messages_fts`` kept in sync by triggers. Existing rows
  are indexed here.

The usage views count a message once: rows a fork inherited (``seq <= forked_at_seq`` in a
session with a parent) are left out, and so are archived rows (query ``archived_messages``
for them). Like the 0003 views they show live sessions only.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from sqlsessions.migration_support import migration_schema, schema_prefix

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
ITEM_TYPE = sa.JSON().with_variant(JSONB(), "postgresql").with_variant(sa.Text(), "sqlite")
USAGE_COLUMNS = ("model", "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens")
SEARCH_INDEX = "ix_messages_content_search"
SEARCH_LANGUAGE = "simple"
SEARCH_COLUMN = "search_vector"

_LIVE = "(s.expires_at IS NULL OR s.expires_at > CURRENT_TIMESTAMP)"
_OWN = "(s.parent_id IS NULL OR m.seq > s.forked_at_seq)"

_MESSAGE_COSTS = """
CREATE VIEW {q}message_costs AS
SELECT
    m.session_id AS session_id,
    m.seq AS seq,
    s.agent_id AS agent_id,
    m.model AS model,
    {day} AS day,
    COALESCE(m.input_tokens, 0) AS input_tokens,
    COALESCE(m.output_tokens, 0) AS output_tokens,
    COALESCE(m.cached_tokens, 0) AS cached_tokens,
    COALESCE(m.reasoning_tokens, 0) AS reasoning_tokens,
    (COALESCE(m.input_tokens, 0) - COALESCE(m.cached_tokens, 0)) * p.input_per_million / 1e6
      + COALESCE(m.cached_tokens, 0)
        * COALESCE(p.cached_input_per_million, p.input_per_million) / 1e6
      + COALESCE(m.output_tokens, 0) * p.output_per_million / 1e6 AS cost
FROM {q}messages m
JOIN {q}sessions s ON s.id = m.session_id
LEFT JOIN {q}model_prices p
  ON p.model = m.model
 AND p.effective_from = (
     SELECT MAX(p2.effective_from) FROM {q}model_prices p2
     WHERE p2.model = m.model AND p2.effective_from <= m.created_at
 )
WHERE {live} AND {own}
  AND (m.model IS NOT NULL OR m.input_tokens IS NOT NULL OR m.output_tokens IS NOT NULL)
"""

_USAGE_DAILY = """
CREATE VIEW {q}usage_daily AS
SELECT day, agent_id, model,
       COUNT(*) AS messages,
       COUNT(DISTINCT session_id) AS sessions,
       CAST(SUM(input_tokens) AS BIGINT) AS input_tokens,
       CAST(SUM(output_tokens) AS BIGINT) AS output_tokens,
       CAST(SUM(cached_tokens) AS BIGINT) AS cached_tokens,
       CAST(SUM(reasoning_tokens) AS BIGINT) AS reasoning_tokens,
       SUM(cost) AS cost
FROM {q}message_costs
GROUP BY day, agent_id, model
"""

_SQLITE_FTS = (
    "CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages', "
    "content_rowid='rowid')",
    "INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')",
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
    "INSERT INTO messages_fts(rowid, content) VALUES (new.rowid, new.content); END",
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, content) "
    "VALUES ('delete', old.rowid, old.content); END",
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN "
    "INSERT INTO messages_fts(messages_fts, rowid, content) "
    "VALUES ('delete', old.rowid, old.content); "
    "INSERT INTO messages_fts(rowid, content) VALUES (new.rowid, new.content); END",
)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    schema = migration_schema()
    q = schema_prefix()
    for name in USAGE_COLUMNS:
        kind = sa.Text() if name == "model" else sa.BigInteger()
        op.add_column("messages", sa.Column(name, kind, nullable=True), schema=schema)
    op.add_column("sessions", sa.Column("parent_id", sa.String(255), nullable=True), schema=schema)
    op.add_column(
        "sessions", sa.Column("forked_at_seq", sa.BigInteger(), nullable=True), schema=schema
    )
    op.create_table(
        "model_prices",
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("effective_from", TIMESTAMP, nullable=False),
        sa.Column("input_per_million", sa.Float(), nullable=False),
        sa.Column("output_per_million", sa.Float(), nullable=False),
        sa.Column("cached_input_per_million", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("model", "effective_from", name="pk_model_prices"),
    )
    op.create_table(
        "archived_messages",
        sa.Column("session_id", sa.String(255), nullable=False),
        sa.Column("segment", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("tool_call_id", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False, server_default=sa.text("'message'")),
        sa.Column("item_format", sa.Text(), nullable=True),
        sa.Column("item", ITEM_TYPE, nullable=True),
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("input_tokens", sa.BigInteger(), nullable=True),
        sa.Column("output_tokens", sa.BigInteger(), nullable=True),
        sa.Column("cached_tokens", sa.BigInteger(), nullable=True),
        sa.Column("reasoning_tokens", sa.BigInteger(), nullable=True),
        sa.Column("archived_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name="fk_archived_messages_session_id_sessions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "segment", "seq", name="pk_archived_messages"),
    )
    op.create_table(
        "archived_tool_calls",
        sa.Column("session_id", sa.String(255), nullable=False),
        sa.Column("segment", sa.Integer(), nullable=False),
        sa.Column("message_seq", sa.BigInteger(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("function_name", sa.Text(), nullable=False),
        sa.Column("arguments", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id", "segment", "message_seq"],
            [
                "archived_messages.session_id",
                "archived_messages.segment",
                "archived_messages.seq",
            ],
            name="fk_archived_tool_calls_archived_messages",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "session_id", "segment", "message_seq", "idx", name="pk_archived_tool_calls"
        ),
    )
    if dialect == "sqlite":
        for statement in _SQLITE_FTS:
            op.execute(statement)
        day = "date(m.created_at)"
    else:
        # A stored vector, not an expression index alone: ranking and phrase rechecks then
        # read the vector instead of parsing every candidate's text again.
        op.execute(
            f"ALTER TABLE {q}messages ADD COLUMN {SEARCH_COLUMN} tsvector GENERATED ALWAYS AS "
            f"(to_tsvector('{SEARCH_LANGUAGE}'::regconfig, content)) STORED"
        )
        op.execute(f"CREATE INDEX {SEARCH_INDEX} ON {q}messages USING gin ({SEARCH_COLUMN})")
        day = "(m.created_at AT TIME ZONE 'UTC')::date"
    for template in (_MESSAGE_COSTS, _USAGE_DAILY):
        op.execute(template.format(q=q, day=day, live=_LIVE, own=_OWN))


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    q = schema_prefix()
    op.execute(f"DROP VIEW IF EXISTS {q}usage_daily")
    op.execute(f"DROP VIEW IF EXISTS {q}message_costs")
    if dialect == "sqlite":
        for trigger in ("messages_fts_update", "messages_fts_delete", "messages_fts_insert"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS messages_fts")
    else:
        op.execute(f"DROP INDEX IF EXISTS {q}{SEARCH_INDEX}")
        op.execute(f"ALTER TABLE {q}messages DROP COLUMN IF EXISTS {SEARCH_COLUMN}")
    op.drop_table("archived_tool_calls")
    op.drop_table("archived_messages")
    op.drop_table("model_prices")
    # Plain DROP COLUMN on both dialects: a SQLite batch "move and copy" would trip over the
    # analytics views (see 0003).
    for name in ("forked_at_seq", "parent_id"):
        op.execute(f"ALTER TABLE {q}sessions DROP COLUMN {name}")
    for name in reversed(USAGE_COLUMNS):
        op.execute(f"ALTER TABLE {q}messages DROP COLUMN {name}")
