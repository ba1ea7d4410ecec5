"""The `demo` command: record a sample agent conversation, read it back, show its analytics."""

from __future__ import annotations

from typing import Any

import typer
from rich.text import Text

from sqlsessions.analytics import ensure_schema, read_view
from sqlsessions.cli.common import (
    out,
    print_session,
    record_table,
    reported_errors,
    state_of,
    table,
)
from sqlsessions.models import Role, Session, ToolCall, ToolFunction
from sqlsessions.store import Store

DEMO_SESSION_ID = "demo-trip-to-lisbon"
DEMO_AGENT_ID = "travel-assistant"
_BOOKING = '{"restaurant": "Jardim Verde", "people": 2, "time": "%s"}'


def _call(call_id: str, name: str, arguments: str) -> ToolCall:
    return ToolCall(id=call_id, function=ToolFunction(name=name, arguments=arguments))


def record_demo(store: Store) -> Session:
    """Write the demo conversation (replacing an earlier run's) in two saves, as an agent would."""
    store.delete(DEMO_SESSION_ID)
    session = store.get(DEMO_SESSION_ID)
    session.agent_id = DEMO_AGENT_ID
    session.set_metadata("channel", "cli-demo")
    session.set_metadata("user", {"name": "Ada", "locale": "en-GB"})
    session.add_message(
        Role.SYSTEM, "You are a travel assistant. Use the tools; never invent bookings."
    )
    session.add_message(
        Role.USER,
        "I'm in Lisbon on Friday. What will the weather be, and can you find a vegetarian "
        "place for dinner near Alfama?",
    )
    session.add_message_with_tool_calls(
        Role.ASSISTANT,
        "Let me check the forecast and look for restaurants.",
        [
            _call("call_1", "get_weather", '{"city": "Lisbon", "day": "friday"}'),
            _call("call_2", "search_restaurants", '{"near": "Alfama", "diet": "vegetarian"}'),
        ],
    )
    session.add_tool_result("call_1", '{"forecast": "sunny", "low_c": 16, "high_c": 24}')
    session.add_tool_result(
        "call_2", '[{"name": "Jardim Verde", "rating": 4.7}, {"name": "Horta", "rating": 4.5}]'
    )
    session.add_message(
        Role.ASSISTANT,
        "Friday looks sunny, 16-24 °C. Jardim Verde (4.7) and Horta (4.5) are vegetarian "
        "and close to Alfama.",
    )
    store.save(session)  # first turn saved; the next save writes only the new messages

    session.add_message(Role.USER, "Book Jardim Verde for two at 8pm, please.")
    session.add_message_with_tool_calls(
        Role.ASSISTANT,
        "",
        [_call("call_3", "book_table", _BOOKING % "20:00")],
    )
    session.add_tool_result("call_3", "Error: no table for 2 at 20:00; next free slot 20:30")
    session.add_message_with_tool_calls(
        Role.ASSISTANT,
        "8pm is taken; trying 8:30pm.",
        [_call("call_4", "book_table", _BOOKING % "20:30")],
    )
    session.add_tool_result("call_4", '{"status": "confirmed", "reference": "JV-4471"}')
    session.add_message(
        Role.ASSISTANT,
        "Done: 8pm was full, so I booked Jardim Verde for two at 8:30pm (reference JV-4471).",
    )
    store.save(session)
    return session


def demo_command(ctx: typer.Context) -> None:
    """Record a sample conversation with tool calls, then read it back and print it.

    Writes to ./sessions.db unless --url (or $SQLSESSIONS_DATABASE_URL) says otherwise;
    safe to run again (the demo session is replaced).
    """
    state = state_of(ctx)
    console = out()
    with reported_errors(state):
        with state.open_store() as writer:
            record_demo(writer)
        with Store(state.config()) as reader:  # a fresh store: everything comes from the database
            session = reader.get_if_exists(DEMO_SESSION_ID)
            ensure_schema(reader.engine, state.schema, reader.config.auto_migrate)
            views: list[Any] = [
                read_view(
                    reader.engine,
                    "session_summary",
                    schema=state.schema,
                    session_id=DEMO_SESSION_ID,
                ),
                read_view(
                    reader.engine,
                    "tool_usage",
                    schema=state.schema,
                    agent_id=DEMO_AGENT_ID,
                    limit=20,
                ),
                read_view(
                    reader.engine,
                    "daily_activity",
                    schema=state.schema,
                    agent_id=DEMO_AGENT_ID,
                    limit=7,
                ),
            ]
    console.print(Text(f"Recorded a demo conversation in {state.shown_url}", style="bold"))
    console.print()
    print_session(console, session)
    console.print()
    summary, *others = views
    for row in summary.rows:
        console.print(record_table("session_summary", summary.columns, row))
        console.print()
    for rows in others:
        console.print(table(rows.view, rows.columns, rows.rows))
        console.print()
    url = "" if state.url == "sqlite:///sessions.db" else f" --url '{state.shown_url}'"
    console.print(
        Text(
            f"Next: sqlsessions{url} sessions show {DEMO_SESSION_ID}   |   sqlsessions{url} stats",
            style="dim",
        )
    )
