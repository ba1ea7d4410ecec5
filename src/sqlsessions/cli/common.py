"""What every `sqlsessions` command shares: the global options, consoles, error reporting,
opening a store, and printing a conversation."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.exceptions import TyperException

from sqlsessions.config import StoreConfig, mask_password, normalize_url
from sqlsessions.engine import is_database_error, wrap_error
from sqlsessions.errors import SchemaNotReadyError, SqlSessionsError
from sqlsessions.models import Message, Role, Session, format_timestamp
from sqlsessions.store import Store

EXIT_ERROR = 1
EXIT_SCHEMA_NOT_READY = 2
YES_OPTION_HELP = "Do not ask for confirmation (needed when standard input is not a terminal)."

OwnerOption = Annotated[
    str | None,
    typer.Option(
        "--owner",
        help="Work in this owner's (tenant's, user's) sessions only; default: the default "
        "owner ''.",
        show_default=False,
    ),
]


def in_owner_scope(store: Store, owner: str | None) -> Store:
    """`store`, scoped to `owner` when one is given (the default owner '' otherwise)."""
    return store if owner is None else store.scoped(owner=owner)


@dataclass(frozen=True)
class State:
    """The global options: which database, in which PostgreSQL schema, prepared or not."""

    url: str
    schema: str | None = None
    prepare_threshold: int | None = None

    @property
    def shown_url(self) -> str:
        """The URL as it may be printed (password masked)."""
        return mask_password(self.url)

    def config(self, **options: Any) -> StoreConfig:
        """A store configuration for this database (the CLI never caches sessions)."""
        options.setdefault("cache_size", 0)
        options.setdefault("prepare_threshold", self.prepare_threshold)
        return StoreConfig(url=self.url, schema=self.schema, **options)

    def open_store(self, *, existing: bool = False, **options: Any) -> Store:
        """A store on this database, after saying which one on stderr.

        `existing` (read and delete commands): refuse a SQLite file that does not exist
        rather than create an empty database.
        """
        if existing:
            self.require_existing()
        store = Store(self.config(**options))
        announce(self)
        return store

    def require_existing(self) -> None:
        """Fail (SqlSessionsError) when the URL names a SQLite file that does not exist."""
        path = sqlite_file(self.url)
        if path is not None and not path.exists():
            raise SqlSessionsError(
                f"no database at {self.shown_url}: the file {path} does not exist "
                "(nothing was created; check --url or $SQLSESSIONS_DATABASE_URL)"
            )


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names (None for another database or an in-memory one)."""
    try:
        parsed = normalize_url(url)
    except SqlSessionsError:
        return None  # reported when the store opens
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    if str(parsed.database).startswith("file:"):
        return None  # a SQLite URI: leave it to SQLite
    return Path(str(parsed.database))


def announce(state: State) -> None:
    """Say on stderr which database the command works on (password masked)."""
    where = f" (schema {state.schema})" if state.schema else ""
    err().print(Text(f"Database: {state.shown_url}{where}", style="dim"), soft_wrap=True)


def is_interactive() -> bool:
    """Whether a person can answer a question (standard input is a terminal)."""
    return sys.stdin.isatty()


def confirm(state: State, action: str, yes: bool) -> None:
    """Go on only if `yes` (--yes) or the user confirms `action`; refuse when nobody can be
    asked (standard input is not a terminal)."""
    if yes:
        return
    question = f"{action} in {state.shown_url}?"
    if not is_interactive():
        fail(f"refusing to {action} without --yes (standard input is not a terminal)")
    if not typer.confirm(question, default=False, err=True):
        fail("cancelled; nothing was changed")


def state_of(ctx: typer.Context) -> State:
    state = ctx.find_root().obj
    if not isinstance(state, State):  # pragma: no cover - the root callback always sets it
        raise SqlSessionsError("internal error: global options were not parsed")
    return state


def out() -> Console:
    """The console for results (stdout); created per use so it sees the current terminal."""
    return Console(highlight=False, soft_wrap=False)


def err() -> Console:
    """The console for messages and progress (stderr)."""
    return Console(stderr=True, highlight=False)


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print `message` in red on stderr, on one line, and exit with `code` (no traceback)."""
    one_line = " ".join(message.split())
    err().print(Text(f"Error: {one_line}", style="bold red"), soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def reported_errors(state: State) -> Iterator[None]:
    """Turn sqlsessions and database errors into a red message and a non-zero exit."""
    try:
        yield
    except (typer.Exit, typer.Abort, TyperException):
        raise  # already a message and an exit code
    except SchemaNotReadyError as exc:
        fail(str(exc), EXIT_SCHEMA_NOT_READY)
    except SqlSessionsError as exc:
        fail(_masked(str(exc), state), EXIT_ERROR)
    except Exception as exc:
        if not is_database_error(exc):
            # Never a traceback: a bug of ours still ends in one line naming the error.
            fail(_masked(f"unexpected {type(exc).__name__}: {exc}", state), EXIT_ERROR)
        try:
            url = normalize_url(state.url)
        except SqlSessionsError:  # pragma: no cover - the URL was parsed already
            fail(f"database error: {type(exc).__name__}", EXIT_ERROR)
        fail(str(wrap_error(exc, url)), EXIT_ERROR)


def _masked(message: str, state: State) -> str:
    """`message` with the raw URL (and its password) replaced by the masked one."""
    try:
        password = normalize_url(state.url).password
    except SqlSessionsError:
        password = None
    if password:
        message = message.replace(str(password), "***")
    return message


# --- formatting -----------------------------------------------------------------------------


def shown(value: Any) -> str:
    """A cell value as text: timestamps as UTC to the second, dates ISO, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return format_timestamp(value.replace(microsecond=0)).replace("T", " ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def table(title: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> Table:
    """A Rich table; numeric columns right-aligned."""
    result = Table(title=title, title_justify="left", header_style="bold")
    numeric = [
        bool(rows) and all(isinstance(row[i], int) for row in rows) for i in range(len(columns))
    ]
    for name, right in zip(columns, numeric, strict=True):
        result.add_column(name, justify="right" if right else "left", overflow="fold")
    for row in rows:
        result.add_row(*(Text(shown(value)) for value in row))
    return result


def record_table(title: str, columns: tuple[str, ...], row: tuple[Any, ...]) -> Table:
    """One row shown vertically: a column per line."""
    result = Table(title=title, title_justify="left", show_header=False)
    result.add_column("column", style="bold")
    result.add_column("value")
    for name, value in zip(columns, row, strict=True):
        result.add_row(name, Text(shown(value)))
    return result


_ROLE_STYLE = {
    Role.SYSTEM: "magenta",
    Role.USER: "bold cyan",
    Role.ASSISTANT: "bold green",
    Role.TOOL: "yellow",
}


def print_session(console: Console, session: Session) -> None:
    """A session as a readable conversation: header, metadata, then each message."""
    header = Text()
    header.append("Session ", style="bold")
    header.append(session.id, style="bold")
    if session.agent_id:
        header.append(f"  (agent {session.agent_id})")
    if session.owner:
        header.append(f"  (owner {session.owner})")
    console.print(header)
    console.print(
        Text(
            f"created {format_timestamp(session.created_at)}  "
            f"updated {format_timestamp(session.updated_at)}  "
            f"{len(session.messages)} messages",
            style="dim",
        )
    )
    for key, value in session.metadata.items():
        console.print(Text(f"  {key} = {json.dumps(value, ensure_ascii=False)}", style="dim"))
    for message in session.messages:
        console.print()
        console.print(message_text(message))


def message_text(message: Message) -> Text:
    """One message: its role line, content, and the tool calls it makes."""
    text = Text()
    text.append(message.role.value, style=_ROLE_STYLE.get(message.role, "bold"))
    if message.name:
        text.append(f" ({message.name})")
    if message.tool_call_id:
        text.append(f" <- result of {message.tool_call_id}", style="dim")
    if message.content:
        text.append("\n")
        text.append(message.content)
    for call in message.tool_calls or ():
        text.append("\n")
        text.append("  -> ", style="dim")
        text.append(call.function.name, style="bold")
        text.append(f"({call.function.arguments})")
        text.append(f"  [{call.id}]", style="dim")
    return text
