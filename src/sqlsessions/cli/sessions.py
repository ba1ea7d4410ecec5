"""The `sessions` commands: list, show and delete sessions."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from sqlsessions.cli.common import (
    YES_OPTION_HELP,
    OwnerOption,
    confirm,
    err,
    in_owner_scope,
    out,
    print_session,
    reported_errors,
    sqlite_file,
    state_of,
    table,
)
from sqlsessions.cli.output import FormatOption, OutputFormat, records, write_csv, write_json
from sqlsessions.errors import SessionNotFoundError
from sqlsessions.queries import MAX_PAGE_SIZE, SessionSummary
from sqlsessions.store import Store

sessions_app = typer.Typer(help="List, show and delete sessions.", no_args_is_help=True)


@sessions_app.command("list")
def sessions_list(
    ctx: typer.Context,
    agent: Annotated[
        str | None, typer.Option("--agent", help="Only this agent's sessions.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many sessions.")] = 50,
    output_format: FormatOption = OutputFormat.table,
    owner: OwnerOption = None,
) -> None:
    """List live sessions, most recently updated first."""
    state = state_of(ctx)
    with reported_errors(state), state.open_store(existing=True) as root:
        summaries, more = _summaries(in_owner_scope(root, owner), agent, limit)
    rows = [
        (s.id, s.agent_id or "", s.message_count, s.created_at, s.updated_at, s.expires_at)
        for s in summaries
    ]
    columns = ("id", "agent", "messages", "created", "updated", "expires")
    if output_format is not OutputFormat.table:
        fields = ("id", "agent_id", "message_count", "created_at", "updated_at", "expires_at")
        if output_format is OutputFormat.json:
            write_json(records(fields, rows))
        else:
            write_csv(fields, rows)
        if more:
            err().print(Text(f"(more sessions exist: raise --limit above {limit})"))
        return
    console = out()
    if not rows:
        console.print("No sessions.")
        return
    console.print(table(f"Sessions in {state.shown_url}", columns, rows))
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
    owner: OwnerOption = None,
) -> None:
    """Print a session as a conversation, with its tool calls and results."""
    state = state_of(ctx)
    with reported_errors(state), state.open_store(existing=True) as root:
        session = in_owner_scope(root, owner).get_if_exists(session_id)
    print_session(out(), session)


@sessions_app.command("delete")
def sessions_delete(
    ctx: typer.Context,
    session_id: Annotated[str, typer.Argument(metavar="ID", help="The session id.")],
    missing_ok: Annotated[
        bool, typer.Option("--missing-ok", help="Succeed if there is no such session.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help=YES_OPTION_HELP)] = False,
    owner: OwnerOption = None,
) -> None:
    """Delete a session with its messages and metadata (exit 1 if there is no such session).

    Asks for confirmation, or needs --yes when standard input is not a terminal.
    """
    state = state_of(ctx)
    nothing = Text(f"No session {session_id!r}; nothing deleted.")
    file = sqlite_file(state.url)
    if missing_ok and file is not None and not file.exists():
        out().print(nothing)
        return
    with reported_errors(state), state.open_store(existing=True) as root:
        store = in_owner_scope(root, owner)
        try:
            session = store.get_if_exists(session_id)
        except SessionNotFoundError:
            if missing_ok:
                out().print(nothing)
                return
            raise
        count = len(session.messages)
        confirm(state, f"delete session {session_id!r} and its {count} message(s)", yes)
        store.delete(session_id)
    out().print(Text(f"Deleted session {session_id!r}."))
