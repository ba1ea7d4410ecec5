"""Session owner: a session's identity becomes (owner, id).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25

- ``owner`` (text, NOT NULL, default ``''``) on every per-session table: ``sessions``,
  ``messages``, ``tool_calls``, ``session_metadata``, ``archived_messages``,
  ``archived_tool_calls``. Every existing row gets the default owner ``''``.
- Keys include it right after the session id (every key still STARTS with the session id,
  the Citus distribution column): sessions ``(id, owner)``; messages
  ``(session_id, owner, seq)``; tool_calls ``(session_id, owner, message_seq, idx)``;
  session_metadata ``(session_id, owner, key)``; archived_messages
  ``(session_id, owner, segment, seq)``; archived_tool_calls
  ``(session_id, owner, segment, message_seq, idx)``; the unique append-key index
  ``(session_id, owner, append_key)``; foreign keys are composite ``(session_id, owner)``
  with the same ON DELETE CASCADE.
- The listing indexes lead with ``owner`` (every listing filters by it).
- The analytics views group per ``(session_id, owner)`` (two owners' sessions with one id
  are never merged) and expose ``owner`` as a column.

PostgreSQL (and Citus, distributed or not) alters the tables in place. SQLite cannot change
a primary key: each table is rebuilt (old tables renamed, new ones created and filled, old
ones dropped; message rowids are kept, so the FTS5 index stays valid).

Downgrading refuses, with one line saying why, while any session has an owner other than
``''`` (two owners' sessions with one id could not be represented); otherwise it restores
the keys, indexes and views of revision 0006.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

from sqlsessions.errors import SqlSessionsError
from sqlsessions.migration_support import schema_prefix

revision: str = "0007"
down_revision: str | None = "0006"
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
"""The per-session tables, parents before children."""

VIEWS = ("session_summary", "tool_usage", "daily_activity", "message_costs", "usage_daily")

PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "sessions": ("id",),
    "messages": ("session_id", "seq"),
    "tool_calls": ("session_id", "message_seq", "idx"),
    "session_metadata": ("session_id", "key"),
    "archived_messages": ("session_id", "segment", "seq"),
    "archived_tool_calls": ("session_id", "segment", "message_seq", "idx"),
}
"""Primary keys at revision 0006; revision 0007 inserts `owner` after the leading column."""

# (table, columns, referred table, referred columns) at 0006; 0007 adds owner to both sides.
FOREIGN_KEYS: tuple[tuple[str, tuple[str, ...], str, tuple[str, ...]], ...] = (
    ("messages", ("session_id",), "sessions", ("id",)),
    ("tool_calls", ("session_id", "message_seq"), "messages", ("session_id", "seq")),
    ("session_metadata", ("session_id",), "sessions", ("id",)),
    ("archived_messages", ("session_id",), "sessions", ("id",)),
    (
        "archived_tool_calls",
        ("session_id", "segment", "message_seq"),
        "archived_messages",
        ("session_id", "segment", "seq"),
    ),
)

LISTING_INDEXES: dict[bool, tuple[tuple[str, tuple[str, ...]], ...]] = {
    False: (
        ("ix_sessions_updated_at_id", ("updated_at", "id")),
        ("ix_sessions_agent_id_updated_at_id", ("agent_id", "updated_at", "id")),
    ),
    True: (
        ("ix_sessions_owner_updated_at_id", ("owner", "updated_at", "id")),
        ("ix_sessions_owner_agent_id_updated_at_id", ("owner", "agent_id", "updated_at", "id")),
    ),
}
APPEND_KEY_INDEXES = {
    False: ("ix_messages_session_id_append_key", ("session_id", "append_key")),
    True: ("ix_messages_session_id_owner_append_key", ("session_id", "owner", "append_key")),
}

_LIVE = "(s.expires_at IS NULL OR s.expires_at > CURRENT_TIMESTAMP)"
_OWN = "(s.parent_id IS NULL OR m.seq > s.forked_at_seq)"

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
    s.expires_at AS expires_at,
    s.owner AS owner
FROM {q}sessions s
LEFT JOIN (
    SELECT
        session_id,
        owner,
        SUM(CASE WHEN role = 'system' THEN 1 ELSE 0 END) AS system_messages,
        SUM(CASE WHEN role = 'user' THEN 1 ELSE 0 END) AS user_messages,
        SUM(CASE WHEN role = 'assistant' THEN 1 ELSE 0 END) AS assistant_messages,
        SUM(CASE WHEN role = 'tool' THEN 1 ELSE 0 END) AS tool_messages,
        COUNT(*) AS total_messages
    FROM {q}messages
    WHERE kind = 'message'
    GROUP BY session_id, owner
) m ON m.session_id = s.id AND m.owner = s.owner
LEFT JOIN (
    SELECT session_id, owner, COUNT(*) AS tool_call_count
    FROM {q}tool_calls
    GROUP BY session_id, owner
) t ON t.session_id = s.id AND t.owner = s.owner
WHERE {live}
"""

_TOOL_USAGE = """
CREATE VIEW {q}tool_usage AS
SELECT day, agent_id, function_name, COUNT(*) AS calls, COUNT(DISTINCT session_id) AS sessions,
       owner
FROM (
    SELECT {day} AS day, s.owner AS owner, s.agent_id AS agent_id,
           t.function_name AS function_name, t.session_id AS session_id
    FROM {q}tool_calls t
    JOIN {q}messages m
      ON m.session_id = t.session_id AND m.owner = t.owner AND m.seq = t.message_seq
    JOIN {q}sessions s ON s.id = t.session_id AND s.owner = t.owner
    WHERE {live}
) calls
GROUP BY day, owner, agent_id, function_name
"""

_DAILY_ACTIVITY = """
CREATE VIEW {q}daily_activity AS
SELECT day, agent_id, COUNT(DISTINCT session_id) AS sessions, COUNT(*) AS messages, owner
FROM (
    SELECT {day} AS day, s.owner AS owner, s.agent_id AS agent_id, m.session_id AS session_id
    FROM {q}messages m
    JOIN {q}sessions s ON s.id = m.session_id AND s.owner = m.owner
    WHERE {live} AND m.kind = 'message'
) activity
GROUP BY day, owner, agent_id
"""

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
      + COALESCE(m.output_tokens, 0) * p.output_per_million / 1e6 AS cost,
    s.owner AS owner
FROM {q}messages m
JOIN {q}sessions s ON s.id = m.session_id AND s.owner = m.owner
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
       SUM(cost) AS cost,
       owner
FROM {q}message_costs
GROUP BY day, owner, agent_id, model
"""

_FTS_TRIGGERS = ("messages_fts_insert", "messages_fts_delete", "messages_fts_update")


def upgrade() -> None:
    q = schema_prefix()
    _drop_views(q)
    if _dialect() == "sqlite":
        _rebuild_sqlite(with_owner=True)
    else:
        _alter_postgres_up(q)
    _create_views(q, (_SESSION_SUMMARY, _TOOL_USAGE, _DAILY_ACTIVITY, _MESSAGE_COSTS, _USAGE_DAILY))


def downgrade() -> None:
    q = schema_prefix()
    owned = op.get_bind().execute(sa.text(f"SELECT 1 FROM {q}sessions WHERE owner <> '' LIMIT 1"))
    if owned.first() is not None:
        raise SqlSessionsError(
            "cannot downgrade below revision 0007: some sessions have an owner other than '' "
            "(earlier revisions cannot hold them); export and delete them first"
        )
    _drop_views(q)
    if _dialect() == "sqlite":
        _rebuild_sqlite(with_owner=False)
    else:
        _alter_postgres_down(q)
    items, usage = (
        _revision("0005_lossless_items.py"),
        _revision("0006_usage_search_fork_archive.py"),
    )
    _create_views(
        q,
        (
            items._SESSION_SUMMARY,
            items._TOOL_USAGE,
            items._DAILY_ACTIVITY,
            usage._MESSAGE_COSTS,
            usage._USAGE_DAILY,
        ),
    )


# --- PostgreSQL: in place -------------------------------------------------------------------


def _keyed(columns: Sequence[str], with_owner: bool) -> tuple[str, ...]:
    """The key columns with `owner` right after the leading (distribution) column."""
    return (columns[0], "owner", *columns[1:]) if with_owner else tuple(columns)


def _foreign_key_name(table: str, columns: Sequence[str], referred: str) -> str:
    if table == "archived_tool_calls":
        return "fk_archived_tool_calls_archived_messages"
    return f"fk_{table}_{'_'.join(columns)}_{referred}"


def _alter_postgres_up(q: str) -> None:
    for table in TABLES:
        op.execute(f"ALTER TABLE {q}{table} ADD COLUMN owner TEXT NOT NULL DEFAULT ''")
    _rekey_postgres(q, with_owner=True)


def _alter_postgres_down(q: str) -> None:
    _rekey_postgres(q, with_owner=False)
    for table in reversed(TABLES):
        op.execute(f"ALTER TABLE {q}{table} DROP COLUMN owner")


def _rekey_postgres(q: str, *, with_owner: bool) -> None:
    """Swap the keys, foreign keys and owner-led indexes to the `with_owner` side."""
    for table, columns, referred, _ in reversed(FOREIGN_KEYS):
        name = _foreign_key_name(table, _keyed(columns, not with_owner), referred)
        op.execute(f"ALTER TABLE {q}{table} DROP CONSTRAINT {name}")
    old_index, _ = APPEND_KEY_INDEXES[not with_owner]
    op.execute(f"DROP INDEX {q}{old_index}")
    for old_listing, _ in LISTING_INDEXES[not with_owner]:
        op.execute(f"DROP INDEX {q}{old_listing}")
    for table in reversed(TABLES):
        op.execute(f"ALTER TABLE {q}{table} DROP CONSTRAINT pk_{table}")
    for table in TABLES:
        key = ", ".join(_keyed(PRIMARY_KEYS[table], with_owner))
        op.execute(f"ALTER TABLE {q}{table} ADD CONSTRAINT pk_{table} PRIMARY KEY ({key})")
    for table, columns, referred, referred_columns in FOREIGN_KEYS:
        keyed = _keyed(columns, with_owner)
        op.execute(
            f"ALTER TABLE {q}{table} ADD CONSTRAINT "
            f"{_foreign_key_name(table, keyed, referred)} FOREIGN KEY ({', '.join(keyed)}) "
            f"REFERENCES {q}{referred} ({', '.join(_keyed(referred_columns, with_owner))}) "
            "ON DELETE CASCADE"
        )
    _create_owner_indexes(with_owner)


def _create_owner_indexes(with_owner: bool) -> None:
    index, columns = APPEND_KEY_INDEXES[with_owner]
    op.create_index(
        index,
        "messages",
        list(columns),
        unique=True,
        postgresql_where=sa.text("append_key IS NOT NULL"),
        sqlite_where=sa.text("append_key IS NOT NULL"),
    )
    for name, listing in LISTING_INDEXES[with_owner]:
        op.create_index(name, "sessions", list(listing))


# --- SQLite: rebuild ------------------------------------------------------------------------

TIMESTAMP = sa.DateTime(timezone=True)


def _usage_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("model", sa.Text(), nullable=True),
        sa.Column("input_tokens", sa.BigInteger(), nullable=True),
        sa.Column("output_tokens", sa.BigInteger(), nullable=True),
        sa.Column("cached_tokens", sa.BigInteger(), nullable=True),
        sa.Column("reasoning_tokens", sa.BigInteger(), nullable=True),
    ]


def _message_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("tool_call_id", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False, server_default=sa.text("'message'")),
        sa.Column("item_format", sa.Text(), nullable=True),
        sa.Column("item", sa.Text(), nullable=True),
        *_usage_columns(),
    ]


def _call_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("call_id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("function_name", sa.Text(), nullable=False),
        sa.Column("arguments", sa.Text(), nullable=False),
    ]


def _sqlite_columns(table: str) -> list[sa.Column[object]]:
    """The columns of `table` at revision 0006 (types as SQLite stores them), owner aside."""
    integer, big = sa.Integer(), sa.BigInteger()
    if table == "sessions":
        return [
            sa.Column("id", sa.String(255), nullable=False),
            sa.Column("agent_id", sa.String(255), nullable=False, server_default=sa.text("''")),
            sa.Column("created_at", TIMESTAMP, nullable=False),
            sa.Column("updated_at", TIMESTAMP, nullable=False),
            sa.Column("expires_at", TIMESTAMP, nullable=True),
            sa.Column("version", big, nullable=False),
            sa.Column("rewrite_version", big, nullable=False),
            sa.Column("last_seq", big, nullable=False, server_default=sa.text("0")),
            sa.Column("message_count", integer, nullable=False, server_default=sa.text("0")),
            sa.Column("incarnation", sa.String(32), nullable=False, server_default=sa.text("''")),
            sa.Column("parent_id", sa.String(255), nullable=True),
            sa.Column("forked_at_seq", big, nullable=True),
        ]
    session_id = sa.Column("session_id", sa.String(255), nullable=False)
    if table == "messages":
        return [
            session_id,
            sa.Column("seq", big, nullable=False, autoincrement=False),
            *_message_columns(),
            sa.Column("append_key", sa.String(64), nullable=True),
        ]
    if table == "tool_calls":
        return [
            session_id,
            sa.Column("message_seq", big, nullable=False, autoincrement=False),
            sa.Column("idx", integer, nullable=False, autoincrement=False),
            *_call_columns(),
        ]
    if table == "session_metadata":
        return [
            session_id,
            sa.Column("key", sa.Text(), nullable=False),
            sa.Column("value", sa.Text(), nullable=False),
        ]
    if table == "archived_messages":
        return [
            session_id,
            sa.Column("segment", integer, nullable=False, autoincrement=False),
            sa.Column("seq", big, nullable=False, autoincrement=False),
            *_message_columns(),
            sa.Column("archived_at", TIMESTAMP, nullable=False),
        ]
    assert table == "archived_tool_calls"
    return [
        session_id,
        sa.Column("segment", integer, nullable=False, autoincrement=False),
        sa.Column("message_seq", big, nullable=False, autoincrement=False),
        sa.Column("idx", integer, nullable=False, autoincrement=False),
        *_call_columns(),
    ]


def _sqlite_table(table: str, with_owner: bool) -> list[sa.Column[object] | sa.Constraint]:
    columns = _sqlite_columns(table)
    items: list[sa.Column[object] | sa.Constraint] = [columns[0]]
    if with_owner:
        items.append(sa.Column("owner", sa.Text(), nullable=False, server_default=sa.text("''")))
    items.extend(columns[1:])
    items.append(
        sa.PrimaryKeyConstraint(*_keyed(PRIMARY_KEYS[table], with_owner), name=f"pk_{table}")
    )
    if table == "messages":
        items.append(
            sa.CheckConstraint(
                "role IN ('system', 'user', 'assistant', 'tool')", name="ck_messages_role"
            )
        )
    for child, child_columns, referred, referred_columns in FOREIGN_KEYS:
        if child == table:
            keyed = _keyed(child_columns, with_owner)
            items.append(
                sa.ForeignKeyConstraint(
                    list(keyed),
                    [f"{referred}.{c}" for c in _keyed(referred_columns, with_owner)],
                    name=_foreign_key_name(table, keyed, referred),
                    ondelete="CASCADE",
                )
            )
    return items


def _rebuild_sqlite(*, with_owner: bool) -> None:
    """Rebuild every per-session table with (or without) owner in its keys.

    Foreign keys are on and cannot be turned off inside the migration's transaction, so the
    old tables are renamed first (SQLite rewrites the children's references to the renamed
    parents), the new ones created under the real names and filled parent first, and the old
    ones dropped child first: no cascade ever reaches a new table.
    """
    bind = op.get_bind()
    for trigger in _FTS_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    for side in (False, True):
        op.execute(f"DROP INDEX IF EXISTS {APPEND_KEY_INDEXES[side][0]}")
        for name, _ in LISTING_INDEXES[side]:
            op.execute(f"DROP INDEX IF EXISTS {name}")
    op.execute("DROP INDEX IF EXISTS ix_sessions_expires_at")
    op.execute("DROP INDEX IF EXISTS ix_tool_calls_function_name")
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} RENAME TO {table}_before_0007")
    for table in TABLES:
        op.create_table(table, *_sqlite_table(table, with_owner))
        copied = [column.name for column in _sqlite_columns(table)]
        if table == "messages":  # the FTS5 index refers to messages by rowid
            copied.insert(0, "rowid")
        names = ", ".join(copied)
        bind.execute(
            sa.text(f"INSERT INTO {table} ({names}) SELECT {names} FROM {table}_before_0007")
        )
    for table in reversed(TABLES):
        op.execute(f"DROP TABLE {table}_before_0007")
    op.create_index(
        "ix_sessions_expires_at",
        "sessions",
        ["expires_at"],
        sqlite_where=sa.text("expires_at IS NOT NULL"),
    )
    op.create_index("ix_tool_calls_function_name", "tool_calls", ["function_name"])
    _create_owner_indexes(with_owner)
    for statement in _revision("0006_usage_search_fork_archive.py")._SQLITE_FTS[2:]:
        op.execute(statement)


# --- shared ---------------------------------------------------------------------------------


def _dialect() -> str:
    return str(op.get_bind().dialect.name)


def _drop_views(q: str) -> None:
    for view in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {q}{view}")


def _create_views(q: str, templates: Sequence[str]) -> None:
    dialect = _dialect()
    day = "date(m.created_at)" if dialect == "sqlite" else "(m.created_at AT TIME ZONE 'UTC')::date"
    for template in templates:
        op.execute(template.format(q=q, day=day, live=_LIVE, own=_OWN))


def _revision(filename: str) -> ModuleType:
    """An earlier revision's module (its definitions are the ones a downgrade restores)."""
    path = Path(__file__).with_name(filename)
    spec = importlib.util.spec_from_file_location(f"sqlsessions_migration_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
