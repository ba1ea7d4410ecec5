"""The `sqlsessions ui` command: serve the read-only viewer with uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from sqlsessions.cli.common import err, fail, out, reported_errors, state_of
from sqlsessions.ui.security import is_loopback, new_token

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def ui_command(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option("--host", help="Interface to bind. Anything but loopback requires a token."),
    ] = DEFAULT_HOST,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to bind.")] = (
        DEFAULT_PORT
    ),
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="SQLSESSIONS_UI_TOKEN",
            help="Access token required on every request (generated when --host is not "
            "loopback and none is given).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Browse sessions, conversations and analytics charts in a local, read-only web page."""
    state = state_of(ctx)
    try:
        import uvicorn

        from sqlsessions.ui.app import create_app
    except ImportError as exc:
        fail(f"the viewer needs the ui extra: pip install 'sqlsessions[ui]' ({exc.name} missing)")
    if token is not None and not token.strip():
        fail("--token must not be empty")
    if token is None and not is_loopback(host):
        token = new_token()
    with reported_errors(state):
        state.require_existing()  # a read-only viewer never creates an empty database
        app = create_app(state.config(), token=token)
    shown_host = f"[{host}]" if ":" in host else host
    address = f"http://{shown_host}:{port}/"
    console = out()
    console.print(Text(f"sqlsessions viewer for {state.shown_url} (read-only)", style="bold"))
    if token is not None:
        console.print(Text(f"Open {address}?token={token}"))
        console.print(Text("(requests without the token are refused)", style="dim"))
    else:
        console.print(Text(f"Open {address}"))
    err().print(Text("Press Ctrl+C to stop.", style="dim"))
    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)

