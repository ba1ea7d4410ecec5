"""The `stats` command: the analytics views as tables, JSON or CSV."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from sqlsessions.analytics import VIEWS, ensure_schema, read_view
from sqlsessions.cli.common import fail, out, reported_errors, state_of, table
from sqlsessions.cli.output import (
    NARROW,
    FormatOption,
    OutputFormat,
    narrow_summary,
    records,
    write_csv,
    write_json,
)


def stats_command(
    ctx: typer.Context,
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Rows per table.")] = 20,
    output_format: FormatOption = OutputFormat.table,
    view: Annotated[
        str | None,
        typer.Option(
            "--view", help=f"Only this view: {', '.join(VIEWS)} (required with --format csv)."
        ),
    ] = None,
) -> None:
    """Show the analytics views: per-session summary, tool usage and daily activity."""
    state = state_of(ctx)
    if view is not None and view not in VIEWS:
        fail(f"--view must be one of {', '.join(VIEWS)}, not {view!r}")
    if output_format is OutputFormat.csv and view is None:
        fail(f"--format csv prints one table: choose it with --view ({', '.join(VIEWS)})")
    names = [view] if view else ["session_summary", "tool_usage", "daily_activity"]
    with reported_errors(state), state.open_store(existing=True) as store:
        ensure_schema(store.engine, state.schema, store.config.auto_migrate)
        views = [
            read_view(store.engine, name, schema=state.schema, agent_id=agent, limit=limit)
            for name in names
        ]
    if output_format is OutputFormat.json:
        write_json({rows.view: records(rows.columns, rows.rows) for rows in views})
        return
    if output_format is OutputFormat.csv:
        write_csv(views[0].columns, views[0].rows)
        return
    console = out()
    titles = {
        "session_summary": "Sessions (latest activity first)",
        "tool_usage": "Tool usage per day",
        "daily_activity": "Daily activity",
    }
    for rows in views:
        if not rows.rows:
            console.print(Text(f"{titles[rows.view]}: no data yet", style="dim"))
        elif rows.view == "session_summary" and console.width < NARROW:
            console.print(narrow_summary(titles[rows.view], rows))  # every column: --format json
        else:
            console.print(table(titles[rows.view], rows.columns, rows.rows))
        console.print()
