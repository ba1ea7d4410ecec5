"""The `sqlsessions` command: migrations, sessions, import/export, analytics, reaper, demo.

Every command works on the database given by `--url`, else $SQLSESSIONS_DATABASE_URL, else
`sqlite:///sessions.db`. Errors are printed in red without a traceback; the exit code is
1 for errors and 2 when a PostgreSQL database is not migrated (run `sqlsessions db upgrade`).

One module per command group: `common` (global options, consoles, error reporting), `db`,
`sessions`, `data` (import/export), `stats`, `reap` and `demo`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from sqlsessions import __version__
from sqlsessions.cli.common import State
from sqlsessions.cli.data import export_command, import_command
from sqlsessions.cli.db import db_app
from sqlsessions.cli.demo import demo_command
from sqlsessions.cli.reap import reap_command
from sqlsessions.cli.sessions import sessions_app
from sqlsessions.cli.stats import stats_command
from sqlsessions.config import DATABASE_URL_ENV, DEFAULT_DATABASE_URL, url_from_environment
from sqlsessions.ui.command import ui_command

app = typer.Typer(
    name="sqlsessions",
    help="Persist AI-agent conversation sessions in SQL (PostgreSQL or SQLite).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals could hold a database password
    rich_markup_mode="markdown",
)
app.add_typer(db_app, name="db")
app.add_typer(sessions_app, name="sessions")
app.command("import")(import_command)
app.command("export")(export_command)
app.command("stats")(stats_command)
app.command("reap")(reap_command)
app.command("demo")(demo_command)
app.command("ui")(ui_command)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"sqlsessions {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            help=f"Database URL (postgresql://... or sqlite:///path.db). Default: "
            f"${DATABASE_URL_ENV}, else {DEFAULT_DATABASE_URL}.",
            show_default=False,
        ),
    ] = None,
    schema: Annotated[
        str | None,
        typer.Option(
            "--schema",
            envvar="SQLSESSIONS_SCHEMA",
            help="PostgreSQL schema holding the sqlsessions tables (default: the search path).",
        ),
    ] = None,
    prepare_threshold: Annotated[
        int | None,
        typer.Option(
            "--prepare-threshold",
            min=0,
            help="PostgreSQL: prepare a statement on the server after this many executions "
            "on a connection (default: never, safe behind PgBouncer in transaction mode; "
            "also ?prepare_threshold=N in the URL).",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the sqlsessions version and exit.",
            callback=_print_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """sqlsessions: AI-agent conversation sessions in PostgreSQL or SQLite."""
    ctx.obj = State(
        url=url_from_environment(url), schema=schema or None, prepare_threshold=prepare_threshold
    )


def main() -> None:
    """Entry point of the `sqlsessions` console script."""
    app()


__all__ = ["app", "main"]
