"""The `search` and `prices` commands (full-text search; the price table behind costs)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

import typer
from rich.text import Text

from sqlsessions.cli.common import (
    OwnerOption,
    err,
    in_owner_scope,
    out,
    reported_errors,
    state_of,
    table,
)
from sqlsessions.cli.output import FormatOption, OutputFormat, records, write_csv, write_json
from sqlsessions.errors import InvalidInputError
from sqlsessions.usage import ModelPrice

prices_app = typer.Typer(
    help="The model prices (per million tokens) that turn token usage into cost.",
    no_args_is_help=True,
)


def search_command(
    ctx: typer.Context,
    query: Annotated[
        str,
        typer.Argument(help='Words (all must match), "a phrase", OR, -excluded.'),
    ],
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=200, help="At most this many.")] = 20,
    newest: Annotated[
        bool, typer.Option("--newest", help="Newest first instead of best match first.")
    ] = False,
    output_format: FormatOption = OutputFormat.table,
    owner: OwnerOption = None,
) -> None:
    """Search the messages of live sessions; prints session, position, role and a snippet.

    json and csv keep the store's snippet as is (matched words in <mark>...</mark>).
    """
    state = state_of(ctx)
    with reported_errors(state), state.open_store() as root:
        page = in_owner_scope(root, owner).search(
            query, agent_id=agent, limit=limit, order="newest" if newest else "rank"
        )
    if output_format is not OutputFormat.table:
        fields = ("session_id", "seq", "role", "agent_id", "created_at", "snippet", "rank")
        data = [
            (h.session_id, h.seq, h.role.value, h.agent_id, h.created_at, h.snippet, h.rank)
            for h in page.hits
        ]
        if output_format is OutputFormat.json:
            write_json(records(fields, data))
        else:
            write_csv(fields, data)
        if page.next_cursor is not None:
            err().print(Text(f"(more matches exist: raise --limit above {limit})"))
        return
    if not page.hits:
        out().print("No matching messages.")
        return
    rows = [
        (
            hit.session_id,
            hit.seq,
            hit.role.value,
            hit.created_at,
            hit.snippet.replace("<mark>", "[").replace("</mark>", "]"),
        )
        for hit in page.hits
    ]
    out().print(
        table(f"Messages matching {query!r}", ("session", "seq", "role", "at", "snippet"), rows)
    )


@prices_app.command("set")
def prices_set(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="The model name, as messages record it.")],
    input_price: Annotated[float, typer.Option("--input", help="Price per million input tokens.")],
    output_price: Annotated[
        float, typer.Option("--output", help="Price per million output tokens.")
    ],
    cached_price: Annotated[
        float | None,
        typer.Option("--cached", help="Price per million cached input tokens (default: input)."),
    ] = None,
    effective_from: Annotated[
        str | None,
        typer.Option("--from", help="Effective from this UTC date or time (default: always)."),
    ] = None,
) -> None:
    """Record a model's price (replacing any price recorded for the same moment)."""
    state = state_of(ctx)
    with reported_errors(state), state.open_store() as store:
        store.set_model_prices(
            {model: ModelPrice(input_price, output_price, cached_price)},
            _moment(effective_from),
        )
    out().print(Text(f"Price of {model!r} recorded."))


@prices_app.command("list")
def prices_list(ctx: typer.Context) -> None:
    """Show every recorded price."""
    state = state_of(ctx)
    with reported_errors(state), state.open_store() as store:
        rows = [
            (r.model, r.effective_from, r.price.input, r.price.output, r.price.cached_input)
            for r in store.model_prices()
        ]
    if not rows:
        out().print("No prices recorded: costs show as '-'. Add one with `sqlsessions prices set`.")
        return
    columns = ("model", "from", "input/M", "output/M", "cached input/M")
    out().print(table("Model prices", columns, rows))


def _moment(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInputError("--from", "must be a date or time like 2026-01-31") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
