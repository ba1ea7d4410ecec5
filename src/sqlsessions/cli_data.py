"""The `import`, `export` and `stats` commands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from sqlsessions.analytics import VIEWS, ensure_schema, read_view
from sqlsessions.cli_common import err, fail, out, reported_errors, state_of, table
from sqlsessions.cli_format import (
    NARROW,
    FormatOption,
    OutputFormat,
    narrow_summary,
    records,
    write_csv,
    write_json,
)
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
    with reported_errors(state), state.open_store() as store:
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
