"""The `import`, `export` and `stats` commands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from sqlsessions.analytics import ensure_schema, read_view
from sqlsessions.cli_common import err, out, reported_errors, state_of, table
from sqlsessions.errors import InvalidInputError
from sqlsessions.store import Store
from sqlsessions.transfer import (
    BadRecord,
    ImportCounts,
    Record,
    export_lines,
    import_session,
    read_records,
    session_from_document,
)


def import_command(
    ctx: typer.Context,
    files: Annotated[
        list[Path],
        typer.Argument(
            metavar="FILE",
            help="JSON (one session, a list of sessions, or a key -> session map) or JSONL "
            "(one session per line) files; '-' reads standard input.",
            show_default=False,
        ),
    ],
) -> None:
    """Import sessions in the Go package's JSON form.

    Idempotent: each session replaces the stored one with the same id, and a session
    already identical is left untouched, so importing a file twice changes nothing.
    Bad records are reported as FILE:LINE: reason and skipped; the exit code is then 1.
    """
    state = state_of(ctx)
    console = err()
    records: list[Record | BadRecord] = []
    for path in files:
        if str(path) == "-":
            records.extend(read_records("<stdin>", sys.stdin.read()))
        else:
            records.extend(read_records(path))
    counts = ImportCounts()
    with reported_errors(state), state.open_store() as store:
        existing = set(store.list())
        progress = Progress(
            TextColumn("importing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        with progress:
            task = progress.add_task("import", total=len(records))
            for record in records:
                problem = (
                    record
                    if isinstance(record, BadRecord)
                    else _import(store, record, existing, counts)
                )
                if problem is not None:
                    counts.skipped += 1
                    counts.problems.append(problem)
                    progress.console.print(Text(str(problem), style="red"))
                progress.advance(task)
    summary = f"{counts.imported} imported, {counts.unchanged} unchanged, {counts.skipped} skipped"
    console.print(Text(summary, style="bold red" if counts.skipped else "bold green"))
    if counts.skipped:
        raise typer.Exit(1)


def _import(
    store: Store, record: Record, existing: set[str], counts: ImportCounts
) -> BadRecord | None:
    """Import one record, counting it; a BadRecord when it is not a valid session."""
    try:
        session = session_from_document(record.document)
    except InvalidInputError as exc:
        return BadRecord(record.path, record.line, str(exc))
    outcome = import_session(store, session, exists=session.id in existing)
    existing.add(session.id)
    if outcome == "imported":
        counts.imported += 1
    else:
        counts.unchanged += 1
    return None


def export_command(
    ctx: typer.Context,
    agent: Annotated[
        str | None, typer.Option("--agent", help="Only this agent's sessions.")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write to this file instead of standard output."),
    ] = None,
) -> None:
    """Export live sessions as JSON Lines in the Go package's form, ordered by id.

    Importing the export into an empty database reproduces the sessions exactly.
    """
    state = state_of(ctx)
    count = 0
    with reported_errors(state), state.open_store() as store:
        if output is None:
            for line in export_lines(store, agent):
                sys.stdout.write(line + "\n")
                count += 1
            sys.stdout.flush()
        else:
            with output.open("w", encoding="utf-8") as file:
                for line in export_lines(store, agent):
                    file.write(line + "\n")
                    count += 1
    where = f" to {output}" if output is not None else ""
    err().print(Text(f"Exported {count} session(s){where}."))


def stats_command(
    ctx: typer.Context,
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Rows per table.")] = 20,
) -> None:
    """Show the analytics views: per-session summary, tool usage, daily activity, token usage
    and cost."""
    state = state_of(ctx)
    with reported_errors(state), state.open_store() as store:
        ensure_schema(store.engine, state.schema, store.config.auto_migrate)
        views = [
            read_view(store.engine, view, schema=state.schema, agent_id=agent, limit=limit)
            for view in ("session_summary", "tool_usage", "daily_activity", "usage_daily")
        ]
    console = out()
    titles = {
        "session_summary": "Sessions (latest activity first)",
        "tool_usage": "Tool usage per day",
        "daily_activity": "Daily activity",
        "usage_daily": "Token usage and cost per day (cost: see `sqlsessions prices`)",
    }
    for rows in views:
        if rows.rows:
            console.print(table(titles[rows.view], rows.columns, rows.rows))
        else:
            console.print(Text(f"{titles[rows.view]}: no data yet", style="dim"))
        console.print()
