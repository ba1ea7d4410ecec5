"""The `import` and `export` commands."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

from sqlsessions.cli.common import OwnerOption, err, in_owner_scope, reported_errors, state_of
from sqlsessions.errors import SqlSessionsError
from sqlsessions.transfer import (
    MAX_RECORD_CHARS,
    BadRecord,
    ImportCounts,
    Record,
    export_lines,
    import_records,
    read_records,
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
    max_record_size: Annotated[
        int,
        typer.Option(
            "--max-record-size",
            min=1,
            help="Skip (and report) records longer than this many characters.",
        ),
    ] = MAX_RECORD_CHARS,
    owner: Annotated[
        str | None,
        typer.Option(
            "--owner",
            help="Import every session as this owner's (default: the owner each document "
            "names in its 'owner' key, '' when it has none).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Import sessions in the Go package's JSON form.

    Idempotent: each session replaces the stored one with the same id (and owner), and a
    session already identical is left untouched, so importing a file twice changes nothing.
    Files are streamed (one record in memory at a time). Bad records (invalid UTF-8 or
    JSON, not a session, longer than --max-record-size) are reported as FILE:LINE: reason
    and skipped, and the rest is imported; the exit code is then 1.
    """
    state = state_of(ctx)
    console = err()
    counts = ImportCounts()
    with reported_errors(state), state.open_store() as store:
        progress = Progress(
            TextColumn("importing {task.fields[name]}"),
            BarColumn(),
            DownloadColumn(),
            TimeElapsedColumn(),
            console=console,
        )

        def report(problem: BadRecord) -> None:
            progress.console.print(Text(str(problem), style="red"), soft_wrap=True)

        with progress:
            for path in files:
                with _opened(path) as (name, source, size):
                    task = progress.add_task("import", total=size, name=name)
                    records = read_records(name, source, max_record_chars=max_record_size)
                    for record in _tracked(records, source, progress, task):
                        import_records(store, [record], report, counts, owner=owner)
    summary = f"{counts.imported} imported, {counts.unchanged} unchanged, {counts.skipped} skipped"
    console.print(Text(summary, style="bold red" if counts.skipped else "bold green"))
    if counts.skipped:
        raise typer.Exit(1)


@contextmanager
def _opened(path: Path) -> Iterator[tuple[str, IO[bytes] | None, int | None]]:
    """(name, stream, size) of a file (stream None if it cannot be opened: the reader says
    why), or of standard input spooled to a temporary file (so that input which turns out
    not to be one JSON document can be re-read as JSON Lines)."""
    if str(path) != "-":
        try:
            file = path.open("rb")
        except OSError:
            yield str(path), None, None
            return
        with file:
            yield str(path), file, os.fstat(file.fileno()).st_size
        return
    with tempfile.TemporaryFile() as spool:
        shutil.copyfileobj(sys.stdin.buffer, spool)
        size = spool.tell()
        spool.seek(0)
        yield "<stdin>", spool, size


def _tracked(
    records: Iterator[Record | BadRecord],
    source: IO[bytes] | None,
    progress: Progress,
    task: TaskID,
) -> Iterator[Record | BadRecord]:
    """`records`, advancing the progress bar by how far the file has been read."""
    for record in records:
        yield record
        if source is not None:
            progress.update(task, completed=source.tell())


def export_command(
    ctx: typer.Context,
    agent: Annotated[
        str | None, typer.Option("--agent", help="Only this agent's sessions.")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write to this file instead of standard output."),
    ] = None,
    owner: OwnerOption = None,
) -> None:
    """Export live sessions as JSON Lines in the Go package's form, ordered by id.

    Each line also carries `expires_at` (RFC 3339, or null for never), which the Go package
    ignores and import restores: importing the export into an empty database reproduces the
    sessions exactly. A session that cannot be exported is reported and skipped (exit 1).
    """
    state = state_of(ctx)
    count = 0
    failed: list[str] = []

    def report(session_id: str, error: SqlSessionsError) -> None:
        failed.append(session_id)
        err().print(
            Text(f"session {session_id!r} not exported: {error}", style="red"), soft_wrap=True
        )

    with (
        reported_errors(state),
        state.open_store(existing=True) as root,
        _output(output) as file,
    ):
        for line in export_lines(in_owner_scope(root, owner), agent, report):
            file.write(line + "\n")
            count += 1
    where = f" to {output}" if output is not None else ""
    summary = f"Exported {count} session(s){where}."
    if failed:
        err().print(Text(f"{summary} {len(failed)} could not be exported.", style="bold red"))
        raise typer.Exit(1)
    err().print(Text(summary))


@contextmanager
def _output(path: Path | None) -> Iterator[IO[str]]:
    """The file to export to, or standard output."""
    if path is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    try:
        file = path.open("w", encoding="utf-8")
    except OSError as exc:
        raise SqlSessionsError(f"cannot write {path}: {exc.strerror or exc}") from exc
    with file:
        yield file
