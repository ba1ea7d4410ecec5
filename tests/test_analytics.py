"""The analytics views (migration 0003) and every query of the README's SQL analytics
section, on both dialects."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text, update

from sqlsessions import Role, Store, StoreConfig, ToolCall, ToolFunction, migrate
from sqlsessions.analytics import read_view
from sqlsessions.config import normalize_url
from sqlsessions.migrate import downgrade
from sqlsessions.schema import messages, sessions

README = Path(__file__).resolve().parents[1] / "README.md"
UTC = timezone.utc
TODAY = datetime.now(UTC).date()
TWO_DAYS_AGO = TODAY - timedelta(days=2)
TEN_DAYS_AGO = TODAY - timedelta(days=10)
VIEWS = {"session_summary", "tool_usage", "daily_activity"}


def call(call_id: str, name: str) -> ToolCall:
    return ToolCall(id=call_id, function=ToolFunction(name=name, arguments="{}"))


def at_noon(day: date) -> datetime:
    return datetime.combine(day, time(12), tzinfo=UTC)


def record_known_dataset(store: Store) -> None:
    """Six sessions with known counts; one of them expired (it must not show anywhere)."""
    alpha = store.get("s-alpha")
    alpha.agent_id = "support"
    alpha.set_metadata("channel", "slack")
    alpha.add_message(Role.SYSTEM, "be helpful")
    alpha.add_message(Role.USER, "where is my order?")
    alpha.add_message_with_tool_calls(
        Role.ASSISTANT, "", [call("a1", "search"), call("a2", "lookup")]
    )
    alpha.add_tool_result("a1", "found order 17")
    alpha.add_tool_result("a2", "shipped")
    alpha.add_message(Role.ASSISTANT, "It has shipped.")
    store.save(alpha)

    beta = store.get("s-beta")
    beta.agent_id = "support"
    beta.set_metadata("channel", "email")
    beta.add_message(Role.USER, "find my invoice")
    beta.add_message_with_tool_calls(Role.ASSISTANT, "", [call("b1", "search")])
    beta.add_tool_result("b1", "ERROR: search timed out")
    store.save(beta)

    gamma = store.get("s-gamma")
    gamma.agent_id = "sales"
    gamma.set_metadata("channel", "slack")
    gamma.add_message(Role.USER, "price for 10 seats?")
    gamma.add_message_with_tool_calls(
        Role.ASSISTANT, "checking", [call("g1", "search"), call("g2", "quote")]
    )
    gamma.add_tool_result("g1", "plan: team")
    gamma.add_tool_result("g2", "error-free quote: 100")  # "error-free" still starts with error
    gamma.add_message(Role.ASSISTANT, "100 a month")
    gamma.add_message(Role.USER, "thanks")
    gamma.add_message(Role.ASSISTANT, "you're welcome")
    store.save(gamma)

    empty = store.get("s-empty")
    empty.agent_id = "sales"
    store.save(empty)

    noagent = store.get("s-noagent")
    noagent.add_message(Role.USER, "hello")
    store.save(noagent)

    expired = store.get("s-expired")
    expired.agent_id = "support"
    expired.add_message(Role.USER, "old question")
    expired.add_message_with_tool_calls(Role.ASSISTANT, "", [call("x1", "search")])
    expired.add_tool_result("x1", "Error: gone")
    store.save(expired)

    with store.engine.begin() as conn:
        conn.execute(
            update(messages)
            .where(messages.c.session_id == "s-alpha")
            .values(created_at=at_noon(TWO_DAYS_AGO))
        )
        conn.execute(
            update(messages)
            .where(messages.c.session_id == "s-gamma")
            .values(created_at=at_noon(TEN_DAYS_AGO))
        )
        conn.execute(
            update(sessions)
            .where(sessions.c.id == "s-expired")
            .values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )


@pytest.fixture
def known_store(migrated_url: str) -> Iterator[Store]:
    with Store(StoreConfig(url=migrated_url)) as store:
        record_known_dataset(store)
        yield store


def test_session_summary_counts_messages_by_role_and_tool_calls_per_live_session(
    known_store: Store,
) -> None:
    rows = read_view(known_store.engine, "session_summary").as_dicts()
    by_id = {row["session_id"]: row for row in rows}
    assert set(by_id) == {"s-alpha", "s-beta", "s-gamma", "s-empty", "s-noagent"}
    counts = {
        sid: (
            row["agent_id"],
            row["system_messages"],
            row["user_messages"],
            row["assistant_messages"],
            row["tool_messages"],
            row["total_messages"],
            row["tool_call_count"],
        )
        for sid, row in by_id.items()
    }
    assert counts == {
        "s-alpha": ("support", 1, 1, 2, 2, 6, 2),
        "s-beta": ("support", 0, 1, 1, 1, 3, 1),
        "s-gamma": ("sales", 0, 2, 3, 2, 7, 2),
        "s-empty": ("sales", 0, 0, 0, 0, 0, 0),
        "s-noagent": ("", 0, 1, 0, 0, 1, 0),
    }
    alpha = known_store.get_if_exists("s-alpha")
    assert by_id["s-alpha"]["first_activity"] == alpha.created_at
    assert by_id["s-alpha"]["last_activity"] == alpha.updated_at
    assert by_id["s-alpha"]["expires_at"] is not None


def test_tool_usage_counts_calls_per_function_agent_and_utc_day(known_store: Store) -> None:
    rows = read_view(known_store.engine, "tool_usage").rows
    assert sorted(rows) == sorted(
        [
            (TODAY, "support", "search", 1, 1),
            (TWO_DAYS_AGO, "support", "lookup", 1, 1),
            (TWO_DAYS_AGO, "support", "search", 1, 1),
            (TEN_DAYS_AGO, "sales", "quote", 1, 1),
            (TEN_DAYS_AGO, "sales", "search", 1, 1),
        ]
    )


def test_daily_activity_counts_sessions_and_messages_per_agent_and_day(known_store: Store) -> None:
    rows = read_view(known_store.engine, "daily_activity").rows
    assert rows == [  # newest day first, then agent
        (TODAY, "", 1, 1),
        (TODAY, "support", 1, 3),
        (TWO_DAYS_AGO, "support", 1, 6),
        (TEN_DAYS_AGO, "sales", 1, 7),
    ]


def test_views_can_be_filtered_by_agent_and_session(known_store: Store) -> None:
    support = read_view(known_store.engine, "daily_activity", agent_id="support")
    assert {row[1] for row in support.rows} == {"support"}
    one = read_view(known_store.engine, "session_summary", session_id="s-beta", limit=5)
    assert [row[0] for row in one.rows] == ["s-beta"]


def test_downgrading_below_0003_drops_the_views_and_upgrading_restores_them(
    migrated_url: str,
) -> None:
    engine = create_engine(normalize_url(migrated_url))
    try:
        assert set(inspect(engine).get_view_names()) >= VIEWS
        downgrade(migrated_url, "0002")
        assert not VIEWS & set(inspect(engine).get_view_names())
        assert {"sessions", "messages"} <= set(inspect(engine).get_table_names())
        migrate(migrated_url)
        assert set(inspect(engine).get_view_names()) >= VIEWS
    finally:
        engine.dispose()


def test_views_are_created_in_the_configured_postgresql_schema(postgres_url: str) -> None:
    migrate(postgres_url, schema="agents")
    with Store(StoreConfig(url=postgres_url, schema="agents")) as store:
        session = store.get("in-schema")
        session.add_message_with_tool_calls(Role.ASSISTANT, "", [call("c1", "search")])
        store.save(session)
        summary = read_view(store.engine, "session_summary", schema="agents").as_dicts()
        usage = read_view(store.engine, "tool_usage", schema="agents").rows
        assert set(inspect(store.engine).get_view_names(schema="agents")) >= VIEWS
        assert not VIEWS & set(inspect(store.engine).get_view_names(schema="public"))
    assert [(row["session_id"], row["tool_call_count"]) for row in summary] == [("in-schema", 1)]
    assert [row[2:] for row in usage] == [("search", 1, 1)]
    downgrade(postgres_url, "0002", schema="agents")


# --- the README's SQL analytics section ---------------------------------------------------

SQL_BLOCK = re.compile(r"```sql(?: (sqlite|postgresql))?\n(.*?)```", re.DOTALL)

# For each documented query (by its first-line comment): the rows it returns on the known
# dataset (leading columns only, where later ones are timestamps).
EXPECTED: dict[str, list[tuple[Any, ...]]] = {
    "Most-used tools in the last 7 days": [("search", 2), ("lookup", 1)],
    "Average conversation length per agent": [
        ("sales", 1, 7.0, 7, 2.0),
        ("support", 2, 4.5, 6, 1.5),
        ("", 1, 1.0, 1, 0.0),
    ],
    "Sessions that ended on a tool error": [
        ("s-beta", "support", "search", "ERROR: search timed out")
    ],
    "Longest conversations": [
        ("s-gamma", "sales", 7, 2),
        ("s-alpha", "support", 6, 2),
        ("s-beta", "support", 3, 1),
        ("s-noagent", "", 1, 0),
        ("s-empty", "sales", 0, 0),
    ],
    "Daily active sessions per agent over the last 30 days": [
        (TODAY.isoformat(), "", 1, 1),
        (TODAY.isoformat(), "support", 1, 3),
        (TWO_DAYS_AGO.isoformat(), "support", 1, 6),
        (TEN_DAYS_AGO.isoformat(), "sales", 1, 7),
    ],
    "Tool error rate per function": [("search", 3, 1), ("quote", 1, 1), ("lookup", 1, 0)],
    "Sessions by a metadata value": [("s-alpha", "support", 6), ("s-gamma", "sales", 7)],
}


def documented_queries() -> list[tuple[str | None, str, str]]:
    """(dialect or None for both, title, sql) for each SQL block of the README's analytics."""
    found = []
    text = README.read_text(encoding="utf-8")
    section = text.split("## SQL analytics", 1)[1].split("\n## ", 1)[0]
    for dialect, sql in SQL_BLOCK.findall(section):
        title = sql.splitlines()[0].removeprefix("--").strip()
        found.append((dialect or None, title, sql))
    return found


def plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    return value


def test_the_docs_have_at_least_five_queries_each_with_an_expected_result() -> None:
    titles = {title for _, title, _ in documented_queries()}
    assert len(titles) >= 5
    assert titles == set(EXPECTED)
    for dialect in ("sqlite", "postgresql"):
        runnable = {t for d, t, _ in documented_queries() if d in (None, dialect)}
        assert runnable == titles, f"some queries have no {dialect} variant"


def test_every_documented_query_runs_and_returns_the_expected_rows(known_store: Store) -> None:
    dialect = known_store.engine.dialect.name
    ran = 0
    with known_store.engine.connect() as conn:
        for query_dialect, title, sql in documented_queries():
            if query_dialect not in (None, dialect):
                continue
            rows = conn.execute(text(sql.strip().rstrip(";"))).all()
            expected = EXPECTED[title]
            width = len(expected[0])
            got = [tuple(plain(value) for value in row[:width]) for row in rows]
            assert got == expected, title
            ran += 1
    assert ran == len(EXPECTED)
