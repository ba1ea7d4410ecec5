"""The `db` commands: upgrade, downgrade, distribute (Citus), row-security, current, history
and check."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer
from rich.text import Text

from sqlsessions.cli.common import (
    YES_OPTION_HELP,
    announce,
    confirm,
    err,
    out,
    reported_errors,
    state_of,
    table,
)
from sqlsessions.migrate import (
    check,
    check_known_revision,
    current,
    downgrade,
    head_revision,
    history,
    migrate,
)

db_app = typer.Typer(help="Manage the database schema (Alembic migrations).", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(
    ctx: typer.Context,
    revision: Annotated[
        str, typer.Argument(metavar="REVISION", help="Target revision (default: head).")
    ] = "head",
) -> None:
    """Upgrade the database schema to REVISION (default: the newest)."""
    state = state_of(ctx)
    with reported_errors(state):
        announce(state)
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
    yes: Annotated[bool, typer.Option("--yes", "-y", help=YES_OPTION_HELP)] = False,
) -> None:
    """Downgrade the database schema to REVISION ('base' drops every sqlsessions table).

    Downgrading drops tables or columns and the data in them: it asks for confirmation,
    or needs --yes when standard input is not a terminal.
    """
    state = state_of(ctx)
    with reported_errors(state):
        state.require_existing()
        announce(state)
        at = current(state.url, schema=state.schema)
        confirm(
            state, f"downgrade the schema from {at or 'base'} to {revision} (data is dropped)", yes
        )
        downgrade(state.url, revision, schema=state.schema)
        at = current(state.url, schema=state.schema)
    out().print(Text(f"{state.shown_url} is at revision {at or 'base'}"))


@db_app.command("distribute")
def db_distribute(
    ctx: typer.Context,
    shard_count: Annotated[
        int | None,
        typer.Option("--shard-count", min=1, help="Shards per table (default: citus.shard_count)."),
    ] = None,
) -> None:
    """Citus: distribute the tables by session, co-located (idempotent; run after upgrade)."""
    from sqlsessions.distribute import distribute

    state = state_of(ctx)
    with reported_errors(state):
        announce(state)
        done = distribute(state.url, schema=state.schema, shard_count=shard_count)
    out().print(Text(f"{state.shown_url}: {done.describe()}"))


@db_app.command("current")
def db_current(ctx: typer.Context) -> None:
    """Show the revision the database is at."""
    state = state_of(ctx)
    with reported_errors(state):
        state.require_existing()
        announce(state)
        at = current(state.url, schema=state.schema)
        check_known_revision(at)
        head = head_revision()
    if at == head:
        out().print(Text(f"{at} (head)"))
    else:
        out().print(Text(f"{at or 'none'} (head is {head}: run `sqlsessions db upgrade`)"))


@db_app.command("history")
def db_history() -> None:
    """List the migrations, newest first."""
    rows = [(rev, down or "-", doc.splitlines()[0] if doc else "") for rev, down, doc in history()]
    out().print(table("Migrations", ("revision", "revises", "description"), rows))


@db_app.command("check")
def db_check(ctx: typer.Context) -> None:
    """Check that the database matches the migrations and the models (exit 1 on drift)."""
    state = state_of(ctx)
    with reported_errors(state):
        state.require_existing()
        announce(state)
        problems = check(state.url, schema=state.schema)
    if problems:
        console = err()
        console.print(Text(f"{len(problems)} problem(s) found:", style="bold red"))
        for problem in problems:
            console.print(Text(f"  - {problem}"))
        raise typer.Exit(1)
    message = f"OK: {state.shown_url} matches the migrations (head {head_revision()})"
    out().print(Text(message))


class RowSecurityAction(str, Enum):
    """What `db row-security` does."""

    status = "status"
    enable = "enable"
    disable = "disable"


@db_app.command("row-security")
def db_row_security(
    ctx: typer.Context,
    action: Annotated[
        RowSecurityAction,
        typer.Argument(help="status (default), enable or disable."),
    ] = RowSecurityAction.status,
) -> None:
    """PostgreSQL: enforce each session's owner with row-level security (see the README).

    `enable` turns on the policies migration 0008 created, so a role that does not own the
    tables sees only the owner its transaction set; `disable` turns them off again.
    """
    from sqlsessions.row_security import (
        disable_row_security,
        enable_row_security,
        row_security_status,
    )

    run = {
        RowSecurityAction.status: row_security_status,
        RowSecurityAction.enable: enable_row_security,
        RowSecurityAction.disable: disable_row_security,
    }[action]
    state = state_of(ctx)
    with reported_errors(state):
        state.require_existing()
        announce(state)
        status = run(state.url, schema=state.schema)
    out().print(Text(f"{state.shown_url}:\n{status.describe()}"))
