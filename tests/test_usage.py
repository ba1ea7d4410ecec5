"""Token usage on messages, user-controlled prices, the usage views, and the README's usage
queries (run from the README itself, on both dialects)."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from raw_sql import query
from sqlsessions import (
    InvalidInputError,
    Message,
    ModelPrice,
    Role,
    Store,
    ToolCall,
    ToolFunction,
)
from sqlsessions.cli import app
from sqlsessions.config import normalize_url

README = Path(__file__).resolve().parents[1] / "README.md"
TODAY = datetime.now(timezone.utc).date()


def assistant(content: str, model: str, **usage: int) -> Message:
    return Message(role=Role.ASSISTANT, content=content, model=model, **usage)


def test_usage_fields_survive_append_and_save_on_both_facades(store: Any) -> None:
    reply = assistant("hi", "gpt-4o", input_tokens=10, output_tokens=3, cached_tokens=2)
    thinking = reply.replace(content="more", reasoning_tokens=7, input_tokens=0)
    store.append("s", Message(role=Role.USER, content="hello"), reply)
    session = store.get("s")
    session.messages.append(thinking)
    store.save(session)
    store.clear_cache()
    assert store.get("s").messages[1:] == [reply, thinking]
    assert store.history("s", limit=1) == [thinking]
    store.append("one", reply)  # the one-message path
    store.clear_cache()
    assert store.get("one").messages == [reply]


def test_the_go_json_form_omits_usage_only_when_it_is_absent() -> None:
    plain = Message(role=Role.USER, content="x")
    assert plain.model_dump_json() == '{"role":"user","content":"x"}'
    used = assistant("y", "m", input_tokens=0, output_tokens=5)
    assert used.model_dump_json() == (
        '{"role":"assistant","content":"y","model":"m","input_tokens":0,"output_tokens":5}'
    )
    assert Message.model_validate_json(used.model_dump_json()) == used


@pytest.mark.parametrize(
    ("usage", "field"),
    [({"input_tokens": -1}, "input_tokens"), ({"output_tokens": 1.5}, "output_tokens"),
     ({"cached_tokens": True}, "cached_tokens"), ({"model": 4}, "model")],
)  # fmt: skip
def test_bad_usage_is_refused_by_name(usage: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        Message(role=Role.ASSISTANT, **usage)
    assert caught.value.field == field


def test_bad_prices_are_refused_by_name_and_nothing_is_recorded(store: Any) -> None:
    for prices, field in (
        ({"m": {"input": -1, "output": 1}}, "prices[m].input"),
        ({"m": {"input": 1}}, "prices[m]"),
        ({"m": {"input": 1, "output": 2, "cache": 1}}, "prices[m].cache"),
        ({}, "prices"),
    ):
        with pytest.raises(InvalidInputError) as caught:
            store.set_model_prices(prices)
        assert caught.value.field == field
    assert store.model_prices() == []


def test_usage_daily_sums_tokens_and_prices_them_with_the_price_in_effect(
    store: Any, migrated_url: str
) -> None:
    now = datetime.now(timezone.utc)
    store.set_model_prices({"m": ModelPrice(input=1.0, output=2.0)}, now - timedelta(days=30))
    store.set_model_prices({"m": {"input": 4.0, "output": 8.0}}, now - timedelta(days=1))
    store.set_model_prices({"m": ModelPrice(input=100.0, output=100.0)}, now + timedelta(days=1))
    store.append("s", assistant("a", "m", input_tokens=1_000_000, output_tokens=500_000))
    store.append("s", assistant("b", "other", input_tokens=5, output_tokens=5))
    rows = query(
        migrated_url,
        "SELECT model, messages, input_tokens, output_tokens, cost FROM usage_daily ORDER BY model",
    )
    assert rows == [("m", 1, 1_000_000, 500_000, 8.0), ("other", 1, 5, 5, None)]
    assert [row.price.input for row in store.model_prices()] == [1.0, 4.0, 100.0]


def test_a_fork_does_not_count_the_usage_it_inherited_twice(store: Any, migrated_url: str) -> None:
    store.append("s", assistant("a", "m", input_tokens=10, output_tokens=1))
    store.fork("s", "s2")
    store.append("s2", assistant("b", "m", input_tokens=20, output_tokens=2))
    rows = query(migrated_url, "SELECT session_id, input_tokens FROM message_costs ORDER BY 1")
    assert rows == [("s", 10), ("s2", 20)]


def test_cli_prices_and_stats_show_usage_and_cost(migrated_url: str, db_schema: Any) -> None:
    if db_schema:
        pytest.skip("the CLI schema option is covered by tests/test_cli.py")
    with Store.from_url(migrated_url) as store:
        store.append("s", assistant("a", "gpt-4o", input_tokens=2_000_000, output_tokens=0))
    runner = CliRunner()
    base = ["--url", migrated_url]
    result = runner.invoke(
        app, [*base, "prices", "set", "gpt-4o", "--input", "2.5", "--output", "10"]
    )
    assert result.exit_code == 0, result.output
    listed = runner.invoke(app, [*base, "prices", "list"])
    assert "gpt-4o" in listed.output and "2.5" in listed.output
    stats = runner.invoke(app, [*base, "stats"], env={"COLUMNS": "200"})
    assert stats.exit_code == 0, stats.output
    assert "Token usage and cost" in stats.output
    assert "2000000" in stats.output and "5.0" in stats.output
    bad = runner.invoke(app, [*base, "prices", "set", "x", "--input", "-1", "--output", "1"])
    assert bad.exit_code == 1


def test_cli_search_prints_matching_messages(migrated_url: str, db_schema: Any) -> None:
    if db_schema:
        pytest.skip("the CLI schema option is covered by tests/test_cli.py")
    with Store.from_url(migrated_url) as store:
        store.append("trip", Message(role=Role.USER, content="weather in Lisbon?"))
    runner = CliRunner()
    result = runner.invoke(app, ["--url", migrated_url, "search", "lisbon"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "trip" in result.output and "[Lisbon]" in result.output
    none = runner.invoke(app, ["--url", migrated_url, "search", "paris"])
    assert "No matching messages" in none.output


# --- the README's usage queries -----------------------------------------------------------

SQL_BLOCK = re.compile(r"```sql(?: (sqlite|postgresql))?\n(.*?)```", re.DOTALL)

EXPECTED: dict[str, list[tuple[Any, ...]]] = {
    "Most expensive sessions": [
        ("u2", "sales", 2500, 0.0135),
        ("u1", "support", 2800, 0.0075),
        ("u1-fork", "support", 110, 0.00035),
        ("u3", "support", 20, None),
    ],
    "Cost per agent per day": [
        (TODAY.isoformat(), "sales", 2000, 500, 0.0135),
        (TODAY.isoformat(), "support", 2610, 320, 0.00785),
    ],
    "Tokens per tool-using turn": [("lookup", 1, 1200.0, 0.004), ("quote", 1, 2500.0, 0.0135)],
}


def documented_queries() -> list[tuple[str | None, str, str]]:
    section = README.read_text(encoding="utf-8").split("## Token usage and cost", 1)[1]
    section = section.split("\n## ", 1)[0]
    return [
        (dialect or None, sql.splitlines()[0].removeprefix("--").strip(), sql)
        for dialect, sql in SQL_BLOCK.findall(section)
    ]


def plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    return value


@pytest.fixture
def usage_store(migrated_url: str) -> Any:
    """A known dataset: two agents, priced and unpriced models, a tool call, a fork."""
    lookup = ToolCall(id="c1", function=ToolFunction(name="lookup", arguments="{}"))
    quote = ToolCall(id="q1", function=ToolFunction(name="quote", arguments="{}"))
    with Store.from_url(migrated_url) as store:
        store.set_model_prices(
            {
                "gpt-4o": ModelPrice(input=2.5, output=10.0, cached_input=1.25),
                "claude-x": {"input": 3.0, "output": 15.0},
            }
        )
        for session_id, agent in (("u1", "support"), ("u2", "sales"), ("u3", "support")):
            session = store.get(session_id)
            session.agent_id = agent
            store.save(session)
        store.append(
            "u1",
            Message(role=Role.USER, content="find it"),
            assistant("", "gpt-4o", input_tokens=1000, output_tokens=200, cached_tokens=400)
            .replace(tool_calls=[lookup]),
            Message(role=Role.TOOL, content="found", tool_call_id="c1"),
            assistant("here", "gpt-4o", input_tokens=1500, output_tokens=100, cached_tokens=1000),
        )  # fmt: skip
        store.append(
            "u2",
            Message(role=Role.USER, content="a quote"),
            assistant("", "claude-x", input_tokens=2000, output_tokens=500).replace(
                tool_calls=[quote]
            ),
        )
        store.append("u3", assistant("?", "unpriced", input_tokens=10, output_tokens=10))
        store.fork("u1", "u1-fork")
        store.append("u1-fork", assistant("alt", "gpt-4o", input_tokens=100, output_tokens=10))
        yield store


def test_the_readme_has_the_three_usage_queries_each_with_an_expected_result() -> None:
    titles = {title for _, title, _ in documented_queries()}
    assert titles == set(EXPECTED)


def test_every_readme_usage_query_runs_and_returns_the_expected_rows(
    usage_store: Any, migrated_url: str
) -> None:
    dialect = normalize_url(migrated_url).get_backend_name()
    engine = create_engine(normalize_url(migrated_url))
    ran = 0
    try:
        with engine.connect() as conn:
            for query_dialect, title, sql in documented_queries():
                if query_dialect not in (None, dialect):
                    continue
                rows = conn.execute(text(sql.strip().rstrip(";"))).all()
                got = [tuple(plain(value) for value in row) for row in rows]
                assert got == EXPECTED[title], title
                ran += 1
    finally:
        engine.dispose()
    assert ran == len(EXPECTED)
