"""Machine-readable output for the CLI (`--format json|csv`) and narrow-terminal tables."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from datetime import date, datetime
from enum import Enum
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from sqlsessions.analytics import ViewRows
from sqlsessions.models import format_timestamp

NARROW = 120
"""Below this terminal width `stats` shows the per-session summary's key columns only."""


class OutputFormat(str, Enum):
    """How a command prints its rows."""

    table = "table"
    json = "json"
    csv = "csv"


FormatOption = Annotated[
    OutputFormat,
    typer.Option(
        "--format",
        case_sensitive=False,
        help="table (for people), json, or csv (one header line, then a line per row).",
    ),
]


def plain(value: Any) -> Any:
    """A cell as JSON/CSV wants it: timestamps as RFC 3339 UTC, dates ISO, the rest as is."""
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def write_json(data: Any) -> None:
    """`data` as indented JSON on stdout (timestamps and dates as strings)."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=plain) + "\n")


def records(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """Rows as JSON objects keyed by column name."""
    return [{name: plain(value) for name, value in zip(columns, row, strict=True)} for row in rows]


def write_csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A header line and one line per row on stdout (None as an empty field)."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if value is None else plain(value) for value in row])


def narrow_summary(title: str, rows: ViewRows) -> Table:
    """`session_summary` cut to what fits 80 columns: id, agent, counts, last activity.

    Ids and agents fold when long; counts and times never wrap.
    """
    result = Table(
        title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False
    )
    result.add_column("session_id", overflow="fold")
    result.add_column("agent_id", overflow="fold")
    for name in ("messages", "tools"):
        result.add_column(name, justify="right", no_wrap=True)
    result.add_column("last activity", no_wrap=True)
    for row in [
        (
            row["session_id"],
            row["agent_id"] or "-",
            row["total_messages"],
            row["tool_call_count"],
            row["last_activity"].strftime("%Y-%m-%d %H:%M") if row["last_activity"] else "-",
        )
        for row in rows.as_dicts()
    ]:
        result.add_row(*(Text(str(value)) for value in row))
    return result
