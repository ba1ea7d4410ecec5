"""The `sqlsessions` command: migrations, sessions, import/export, analytics, reaper, demo.

Every command works on the database given by `--url`, else $SQLSESSIONS_DATABASE_URL, else
`sqlite:///sessions.db`. Errors are printed in red without a traceback; the exit code is
1 for errors and 2 when a PostgreSQL database is not migrated (run `sqlsessions db upgrade`).
"""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.text import Text

from sqlsessions.cli_analytics import prices_app, search_command
from sqlsessions.cli_common import State, err, out, print_session, reported_errors, shown
from sqlsessions.cli_common import state_of as _state
from sqlsessions.cli_common import table as _table
from sqlsessions.cli_data import export_command, import_command, stats_command
from sqlsessions.cli_demo import demo_command
from sqlsessions.config import DATABASE_URL_ENV, DEFAULT_DATABASE_URL, url_from_environment
from sqlsessions.errors import SessionNotFoundError
from sqlsessions.migrate import check, current, downgrade, head_revision, history, migrate
from sqlsessions.operations import utcnow
from sqlsessions.queries import MAX_PAGE_SIZE, SessionSummary
from sqlsessions.store import Store

app = typer.Typer(
    name="sqlsessions",
    help="Persist AI-agent conversation sessions in SQL (PostgreSQL or SQLite).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals could hold a database password
    rich_markup_mode="markdown",
)
db_app = typer.Typer(help="Manage the database schema (Alembic migrations).", no_args_is_help=True)
sessions_app = typer.Typer(help="List, show and delete sessions.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(sessions_app, name="sessions")

app.command("import")(import_command)
app.command("export")(export_command)
app.command("stats")(stats_command)
app.command("demo")(demo_command)
app.command("search")(search_command)
app.add_typer(prices_app, name="prices")


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
) -> None:
    """sqlsessions: AI-agent conversation sessions in PostgreSQL or SQLite."""
    ctx.obj = State(url=url_from_environment(url), schema=schema or None)


# --- db ----------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(
    ctx: typer.Context,
    revision: Annotated[
        str, typer.Argument(metavar="REVISION", help="Target revision (default: head).")
    ] = "head",
) -> None:
    """Upgrade the database schema to REVISION (default: the newest)."""
    state = _state(ctx)
    with reported_errors(state):
        migrate(state.url, revision, schema=state.schema)
        at = current(state.url, schema=state.schema)
    out().print(Text(f"{state.shown_url} is at revision {at or 'base'}"))


@db_app.command("downgrade")
def db_downgrade(
    ctx: typer.Context,
    revision: Annotated[
        str,
        typer.Argument(metavar="REVISION", help="Target revision ('base' removes everything)."),
    ],
) -> None:
    """Downgrade the database schema to REVISION ('base' drops every sqlsessions table)."""
    state = _state(ctx)
    with reported_errors(state):
        downgrade(state.url, revision, schema=state.schema)
        at = current(state.url, schema=state.schema)
    out().print(Text(f"{state.shown_url} is at revision {at or 'base'}"))


@db_app.command("current")
def db_current(ctx: typer.Context) -> None:
    """Show the revision the database is at."""
    state = _state(ctx)
    with reported_errors(state):
        at = current(state.url, schema=state.schema)
        head = head_revision()
    if at == head:
        out().print(Text(f"{at} (head)"))
    else:
        out().print(Text(f"{at or 'none'} (head is {head}: run `sqlsessions db upgrade`)"))


@db_app.command("history")
def db_history() -> None:
    """List the migrations, newest first."""
    rows = [(rev, down or "-", doc.splitlines()[0] if doc else "") for rev, down, doc in history()]
    out().print(_table("Migrations", ("revision", "revises", "description"), rows))


@db_app.command("check")
def db_check(ctx: typer.Context) -> None:
    """Check that the database matches the migrations and the models (exit 1 on drift)."""
    state = _state(ctx)
    with reported_errors(state):
        problems = check(state.url, schema=state.schema)
    if problems:
        console = err()
        console.print(Text(f"{len(problems)} problem(s) found:", style="bold red"))
        for problem in problems:
            console.print(Text(f"  - {problem}"))
        raise typer.Exit(1)
    message = f"OK: {state.shown_url} matches the migrations (head {head_revision()})"
    out().print(Text(message))


# --- sessions ------------------------------------------------------------------------------


@sessions_app.command("list")
def sessions_list(
    ctx: typer.Context,
    agent: Annotated[
        str | None, typer.Option("--agent", help="Only this agent's sessions.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many sessions.")] = 50,
) -> None:
    """List live sessions, most recently updated first."""
    state = _state(ctx)
    with reported_errors(state), state.open_store() as store:
        summaries, more = _summaries(store, agent, limit)
    rows = [
        (s.id, s.agent_id or "", s.message_count, s.created_at, s.updated_at, s.expires_at)
        for s in summaries
    ]
    columns = ("id", "agent", "messages", "created", "updated", "expires")
    console = out()
    if not rows:
        console.print("No sessions.")
        return
    console.print(_table(f"Sessions in {state.shown_url}", columns, rows))
    if more:
        console.print(Text(f"(more sessions exist: raise --limit above {limit})", style="dim"))


def _summaries(store: Store, agent: str | None, limit: int) -> tuple[list[SessionSummary], bool]:
    """The `limit` most recently updated sessions, and whether there are more."""
    found: list[SessionSummary] = []
    cursor = None
    while len(found) < limit:
        page = store.list_sessions(
            agent_id=agent, limit=min(MAX_PAGE_SIZE, limit - len(found)), cursor=cursor
        )
        found.extend(page.sessions)
        cursor = page.next_cursor
        if cursor is None:
            return found, False
    return found, True


@sessions_app.command("show")
def sessions_show(
    ctx: typer.Context,
    session_id: Annotated[str, typer.Argument(metavar="ID", help="The session id.")],
) -> None:
    """Print a session as a conversation, with its tool calls and results."""
    state = _state(ctx)
    with reported_errors(state), state.open_store() as store:
        session = store.get_if_exists(session_id)
    print_session(out(), session)


@sessions_app.command("delete")
def sessions_delete(
    ctx: typer.Context,
    session_id: Annotated[str, typer.Argument(metavar="ID", help="The session id.")],
    missing_ok: Annotated[
        bool, typer.Option("--missing-ok", help="Succeed if there is no such session.")
    ] = False,
) -> None:
    """Delete a session with its messages and metadata (exit 1 if there is no such session)."""
    state = _state(ctx)
    with reported_errors(state), state.open_store() as store:
        try:
            store.get_if_exists(session_id)
        except SessionNotFoundError:
            if missing_ok:
                out().print(Text(f"No session {session_id!r}; nothing deleted."))
                return
            raise
        store.delete(session_id)
    out().print(Text(f"Deleted session {session_id!r}."))


# --- reaper --------------------------------------------------------------------------------


@app.command("reap")
def reap(
    ctx: typer.Context,
    loop: Annotated[bool, typer.Option("--loop", help="Keep sweeping every --interval.")] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.0, help="Seconds between sweeps with --loop.")
    ] = 60.0,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Sessions deleted per transaction.")
    ] = 1000,
    runs: Annotated[
        int | None,
        typer.Option("--runs", min=1, help="With --loop: stop after this many sweeps."),
    ] = None,
) -> None:
    """Delete expired sessions (once, or every --interval seconds with --loop)."""
    state = _state(ctx)
    done = 0
    with reported_errors(state), state.open_store() as store:
        try:
            while True:
                deleted = store.reap_expired(batch_size=batch_size)
                done += 1
                stamp = shown(utcnow()) + "  " if loop else ""
                out().print(Text(f"{stamp}Deleted {deleted} expired session(s)."))
                if not loop or (runs is not None and done >= runs):
                    return
                time.sleep(interval)
        except KeyboardInterrupt:
            err().print(Text("Stopped."))


def main() -> None:
    """Entry point of the `sqlsessions` console script."""
    app()


__all__ = ["app", "main"]
