"""Reading the analytics views (created by migration 0003; documented in docs/analytics.md).

- ``session_summary``: one row per live session: ``session_id``, ``agent_id``,
  ``system_messages``, ``user_messages``, ``assistant_messages``, ``tool_messages``,
  ``total_messages``, ``tool_call_count``, ``first_activity`` (the session's created_at),
  ``last_activity`` (its updated_at), ``expires_at``.
- ``tool_usage``: ``day`` (UTC), ``agent_id``, ``function_name``, ``calls``, ``sessions``.
- ``daily_activity``: ``day`` (UTC), ``agent_id``, ``sessions``, ``messages``.
- ``usage_daily`` (migration 0006): ``day``, ``agent_id``, ``model``, ``messages``,
  ``sessions``, token sums and ``cost`` (None without a price for the model).

A message's day is the UTC day it was written to the database (``messages.created_at``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import Engine, column, select, table
from sqlalchemy.sql.expression import ColumnElement

from sqlsessions.engine import is_database_error, wrap_error
from sqlsessions.migrate import prepare_schema

__all__ = ["VIEWS", "ViewRows", "ensure_schema", "read_view"]

_TIMESTAMPS = {"first_activity", "last_activity", "expires_at"}
_TEXT = {"session_id", "agent_id", "function_name", "model"}
_MONEY = {"cost"}

VIEWS: dict[str, tuple[str, ...]] = {
    "session_summary": (
        "session_id",
        "agent_id",
        "system_messages",
        "user_messages",
        "assistant_messages",
        "tool_messages",
        "total_messages",
        "tool_call_count",
        "first_activity",
        "last_activity",
        "expires_at",
    ),
    "tool_usage": ("day", "agent_id", "function_name", "calls", "sessions"),
    "daily_activity": ("day", "agent_id", "sessions", "messages"),
    "usage_daily": (
        "day",
        "agent_id",
        "model",
        "messages",
        "sessions",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "cost",
    ),
}

_DEFAULT_ORDER: dict[str, tuple[tuple[str, bool], ...]] = {
    # (column, descending)
    "session_summary": (("last_activity", True), ("session_id", False)),
    "tool_usage": (("day", True), ("calls", True), ("agent_id", False), ("function_name", False)),
    "daily_activity": (("day", True), ("agent_id", False)),
    "usage_daily": (("day", True), ("agent_id", False), ("model", False)),
}


@dataclass(frozen=True)
class ViewRows:
    """Rows read from one view, with its column names."""

    view: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def ensure_schema(
    engine: Engine, schema: str | None = None, auto_migrate: bool | None = None
) -> None:
    """Migrate (SQLite, by default) or check the schema is current (SchemaNotReadyError)."""
    try:
        with engine.begin() as conn:
            prepare_schema(conn, auto_migrate, schema)
    except Exception as exc:
        if not is_database_error(exc):
            raise
        raise wrap_error(exc, engine.url) from exc


def read_view(
    engine: Engine,
    view: str,
    *,
    schema: str | None = None,
    agent_id: str | None = None,
    session_id: str | None = None,
    limit: int | None = None,
    owner: str | None = None,
) -> ViewRows:
    """Rows of `view`, newest first, optionally for one agent or session (of one `owner`:
    every view has an `owner` column since migration 0007), at most `limit`."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; one of {', '.join(VIEWS)}")
    names = VIEWS[view]
    placed = schema if engine.dialect.name == "postgresql" else None
    source = table(view, *(column(name) for name in (*names, "owner")), schema=placed)
    query = select(*(source.c[name] for name in names))
    if owner is not None:
        query = query.where(source.c.owner == owner)
    if agent_id is not None:
        query = query.where(source.c.agent_id == agent_id)
    if session_id is not None:
        if "session_id" not in names:
            raise ValueError(f"{view} has no session_id column")
        query = query.where(source.c.session_id == session_id)
    order: list[ColumnElement[Any]] = [
        source.c[name].desc() if descending else source.c[name].asc()
        for name, descending in _DEFAULT_ORDER[view]
    ]
    query = query.order_by(*order)
    if limit is not None:
        query = query.limit(limit)
    try:
        with engine.connect() as conn:
            rows = [_normalize(names, row) for row in conn.execute(query)]
    except Exception as exc:
        if not is_database_error(exc):
            raise
        raise wrap_error(exc, engine.url) from exc
    return ViewRows(view, names, rows)


def _normalize(names: tuple[str, ...], row: Any) -> tuple[Any, ...]:
    """The same Python types on both dialects: date, aware UTC datetime, int, str."""
    return tuple(_value(name, value) for name, value in zip(names, row, strict=True))


def _value(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name == "day":
        if isinstance(value, datetime):
            return value.date()
        return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
    if name in _TIMESTAMPS:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        if moment.tzinfo is None:
            return moment.replace(tzinfo=timezone.utc)
        return moment.astimezone(timezone.utc)
    if name in _TEXT:
        return str(value)
    if name in _MONEY:
        return float(value)
    return int(value)
