"""The `reap` command: delete expired sessions, once or in a loop."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.text import Text

from sqlsessions.cli.common import err, out, reported_errors, shown, state_of
from sqlsessions.operations import utcnow


def reap_command(
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
    state = state_of(ctx)
    done = 0
    with reported_errors(state), state.open_store(existing=True) as store:
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
