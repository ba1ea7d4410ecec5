"""`--format json|csv` for `sessions list` and `stats`, and `stats` in an 80-column terminal."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from typer.testing import CliRunner

from sqlsessions import Store, StoreConfig
from sqlsessions.cli import app
from sqlsessions.cli.demo import DEMO_AGENT_ID, DEMO_SESSION_ID, record_demo


def run(url: str, *args: str, columns: int = 200) -> Any:
    return CliRunner().invoke(app, ["--url", url, *args], env={"COLUMNS": str(columns)})


def seeded(url: str) -> str:
    with Store(StoreConfig(url=url)) as store:
        record_demo(store)
        store.append("other", {"role": "user", "content": 'hi, "quoted", comma'})
    return url


def test_sessions_list_prints_json_objects_newest_first(migrated_url: str) -> None:
    result = run(seeded(migrated_url), "sessions", "list", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["id"] for row in rows] == ["other", DEMO_SESSION_ID]
    demo = rows[1]
    assert demo["agent_id"] == DEMO_AGENT_ID and demo["message_count"] == 12
    assert demo["updated_at"].endswith("Z") and demo["expires_at"].endswith("Z")


def test_sessions_list_prints_csv_with_a_header(migrated_url: str) -> None:
    result = run(seeded(migrated_url), "sessions", "list", "--format", "csv", "--limit", "1")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [row["id"] for row in rows] == ["other"]
    assert set(rows[0]) == {
        "id",
        "agent_id",
        "message_count",
        "created_at",
        "updated_at",
        "expires_at",
    }
    assert "more sessions exist" in result.stderr  # the note stays out of the data


def test_stats_prints_every_view_as_json(migrated_url: str) -> None:
    result = run(seeded(migrated_url), "stats", "--format", "json")
    assert result.exit_code == 0, result.output
    views = json.loads(result.stdout)
    assert set(views) == {"session_summary", "tool_usage", "daily_activity", "usage_daily"}
    demo = next(r for r in views["session_summary"] if r["session_id"] == DEMO_SESSION_ID)
    assert demo["tool_call_count"] == 4 and demo["total_messages"] == 12
    assert {r["function_name"] for r in views["tool_usage"]} == {
        "get_weather",
        "search_restaurants",
        "book_table",
    }


def test_stats_prints_one_view_as_csv_and_asks_which(migrated_url: str) -> None:
    url = seeded(migrated_url)
    result = run(url, "stats", "--format", "csv", "--view", "tool_usage")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {row["function_name"] for row in rows} >= {"book_table"}
    assert next(r for r in rows if r["function_name"] == "book_table")["calls"] == "2"
    unchosen = run(url, "stats", "--format", "csv")
    assert unchosen.exit_code == 1 and "--view" in unchosen.stderr
    unknown = run(url, "stats", "--view", "nope")
    assert unknown.exit_code == 1 and "session_summary" in unknown.stderr


def test_stats_fits_an_80_column_terminal_without_breaking_ids_or_times(
    migrated_url: str,
) -> None:
    result = run(seeded(migrated_url), "stats", columns=80)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    demo = next(line for line in lines if DEMO_SESSION_ID in line)
    assert DEMO_AGENT_ID in demo and " 12 " in demo and " 4 " in demo
    assert any(part.count(":") == 1 for part in demo.split())  # last activity, HH:MM, whole
    assert "search_restaurants" in result.stdout


def test_search_prints_hits_as_json_and_csv_with_the_stores_snippet(migrated_url: str) -> None:
    url = seeded(migrated_url)
    with Store(StoreConfig(url=url)) as store:
        store.append("third", {"role": "user", "content": "quoted again, with a comma"})
    result = run(url, "search", "quoted", "--format", "json")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert {(h["session_id"], h["seq"], h["role"]) for h in hits} == {
        ("other", 1, "user"),
        ("third", 1, "user"),
    }
    assert all("<mark>quoted</mark>" in h["snippet"] for h in hits)
    assert all(h["created_at"].endswith("Z") and isinstance(h["rank"], float) for h in hits)
    limited = run(url, "search", "quoted", "--format", "csv", "--limit", "1", "--newest")
    assert limited.exit_code == 0, limited.output
    rows = list(csv.DictReader(io.StringIO(limited.stdout)))
    assert [row["session_id"] for row in rows] == ["third"]
    assert list(rows[0]) == [
        "session_id",
        "seq",
        "role",
        "agent_id",
        "created_at",
        "snippet",
        "rank",
    ]
    assert "more matches exist" in limited.stderr
    nothing = run(url, "search", "absent", "--format", "json")
    assert nothing.exit_code == 0 and json.loads(nothing.stdout) == []
