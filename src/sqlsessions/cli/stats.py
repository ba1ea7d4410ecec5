"""The `stats` command: the analytics views as tables."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from sqlsessions.analytics import ensure_schema, read_view
from sqlsessions.cli.common import out, reported_errors, state_of, table


def stats_command(
    ctx: typer.Context,
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Rows per table.")] = 20,
) -> None:
    """Show the analytics views: per-session summary, tool usage and daily activity."""
    state = state_of(ctx)
    with reported_errors(state), state.open_store(existing=True) as store:
        ensure_schema(store.engine, state.schema, store.config.auto_migrate)
        views = [
            read_view(store.engine, view, schema=state.schema, agent_id=agent, limit=limit)
            for view in ("session_summary", "tool_usage", "daily_activity")
        ]
    console = out()
    titles = {
        "session_summary": "Sessions (latest activity first)",
        "tool_usage": "Tool usage per day",
        "daily_activity": "Daily activity",
    }
    for rows in views:
        if rows.rows:
            console.print(table(titles[rows.view], rows.columns, rows.rows))
        else:
            console.print(Text(f"{titles[rows.view]}: no data yet", style="dim"))
        console.print()
