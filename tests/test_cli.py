"""The `sqlsessions` command, invoked as a user would, on both dialects."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from sqlsessions import Role, Store, StoreConfig, ToolCall, ToolFunction
from sqlsessions.cli import app
from sqlsessions.cli.demo import DEMO_SESSION_ID
from sqlsessions.migrate import head_revision
from sqlsessions.schema import sessions

COMMANDS = [
    [],
    ["db"],
    ["db", "upgrade"],
    ["db", "downgrade"],
    ["db", "current"],
    ["db", "history"],
    ["db", "check"],
    ["sessions"],
    ["sessions", "list"],
    ["sessions", "show"],
    ["sessions", "delete"],
    ["import"],
    ["export"],
    ["stats"],
    ["reap"],
    ["demo"],
]


def cli(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(app, list(args), input=input, env={"COLUMNS": "200"})


def ok(*args: str) -> Any:
    result = cli(*args)
    assert result.exit_code == 0, result.output
    return result


def record_chat(url: str, session_id: str = "chat", agent_id: str = "helper") -> None:
    with Store(StoreConfig(url=url)) as store:
        session = store.get(session_id)
        session.agent_id = agent_id
        session.set_metadata("channel", "slack")
        session.add_message(Role.USER, "weather in [bold]Oslo[/bold]?")
        function = ToolFunction(name="get_weather", arguments='{"city": "Oslo"}')
        call = ToolCall(id="c1", function=function)
        session.add_message_with_tool_calls(Role.ASSISTANT, "checking", [call])
        session.add_tool_result("c1", "rain, 4 °C")
        session.add_message(Role.ASSISTANT, "Rainy and 4 °C.")
        store.save(session)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_every_command_explains_itself_with_help(command: list[str]) -> None:
    result = cli(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    assert len(result.output.splitlines()) > 4


def test_help_lists_every_command() -> None:
    text = ok("--help").output
    for name in ("db", "sessions", "import", "export", "stats", "reap", "demo", "--url"):
        assert name in text


# --- db -------------------------------------------------------------------------------------


def create_empty_database(url: str) -> None:
    """Make sure the database exists (a SQLite file is created empty; PostgreSQL's exists)."""
    if url.startswith("sqlite"):
        sqlite3.connect(make_url(url).database or "").close()


def test_db_commands_migrate_report_and_check_the_schema(db_url: str) -> None:
    head = head_revision()
    create_empty_database(db_url)
    assert "none" in ok("--url", db_url, "db", "current").stdout
    drift = cli("--url", db_url, "db", "check")
    assert drift.exit_code == 1
    assert "database is at revision none" in drift.stderr

    upgraded = ok("--url", db_url, "db", "upgrade")
    assert f"is at revision {head}" in upgraded.stdout
    assert f"{head} (head)" in ok("--url", db_url, "db", "current").stdout
    assert "matches the migrations" in ok("--url", db_url, "db", "check").stdout

    assert "is at revision 0001" in ok("--url", db_url, "db", "downgrade", "0001", "--yes").stdout
    assert "0001 (head is" in ok("--url", db_url, "db", "current").stdout
    ok("--url", db_url, "db", "upgrade", "0002")
    assert "0002" in ok("--url", db_url, "db", "current").stdout
    assert "is at revision base" in ok("--url", db_url, "db", "downgrade", "base", "-y").stdout


def test_db_history_lists_every_migration_newest_first() -> None:
    lines = ok("db", "history").stdout
    assert lines.index("0003") < lines.index("0002") < lines.index("0001")
    assert "Analytics views" in lines


def test_db_downgrade_needs_a_revision() -> None:
    result = cli("db", "downgrade")
    assert result.exit_code == 2
    assert "REVISION" in result.output


def test_printed_urls_never_show_the_password(db_url: str) -> None:
    result = ok("--url", db_url, "db", "upgrade")
    password = make_url(db_url).password
    if password:
        assert password not in result.output
        assert "***" in result.output


def test_a_database_that_cannot_be_reached_gives_a_red_error_without_password_or_traceback(
    db_url: str,
) -> None:
    if db_url.startswith("sqlite"):
        bad = "sqlite:////nonexistent-dir/deeper/x.db"
    else:
        bad = "postgresql://someone:pa55-secret@127.0.0.1:9/nowhere"
    for command in (["db", "current"], ["sessions", "list"], ["stats"]):
        result = cli("--url", bad, *command)
        assert result.exit_code == 1, result.output
        assert "Error:" in result.stderr
        assert "pa55-secret" not in result.output
        assert "Traceback" not in result.output


def test_an_invalid_url_is_reported_as_an_error() -> None:
    result = cli("--url", "mysql://x/y", "sessions", "list")
    assert result.exit_code == 1
    assert "unsupported database" in result.stderr


def test_commands_on_an_unmigrated_postgresql_say_to_run_db_upgrade(db_url: str) -> None:
    create_empty_database(db_url)
    result = cli("--url", db_url, "sessions", "list")
    if db_url.startswith("sqlite"):  # SQLite migrates itself on first use
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2
    assert "sqlsessions db upgrade" in result.stderr
    assert "Traceback" not in result.output
    for command in (["stats"], ["export"], ["sessions", "show", "x"], ["demo"], ["reap"]):
        assert cli("--url", db_url, *command).exit_code == 2


# --- sessions ------------------------------------------------------------------------------


def test_sessions_list_shows_sessions_with_their_agent_and_message_count(
    migrated_url: str,
) -> None:
    assert "No sessions." in ok("--url", migrated_url, "sessions", "list").stdout
    record_chat(migrated_url, "chat-1", "helper")
    record_chat(migrated_url, "chat-2", "other")
    text = ok("--url", migrated_url, "sessions", "list").stdout
    assert "chat-1" in text and "chat-2" in text and "helper" in text
    assert " 4 " in text
    only = ok("--url", migrated_url, "sessions", "list", "--agent", "other").stdout
    assert "chat-2" in only and "chat-1" not in only
    limited = ok("--url", migrated_url, "sessions", "list", "--limit", "1").stdout
    assert "chat-2" in limited and "chat-1" not in limited  # most recently updated first
    assert "more sessions exist" in limited
    assert cli("--url", migrated_url, "sessions", "list", "--limit", "0").exit_code == 2


def test_sessions_show_prints_the_conversation_with_tool_calls_and_results(
    migrated_url: str,
) -> None:
    record_chat(migrated_url)
    text = ok("--url", migrated_url, "sessions", "show", "chat").stdout
    assert "Session chat" in text and "agent helper" in text
    assert 'channel = "slack"' in text
    assert "weather in [bold]Oslo[/bold]?" in text  # content is never read as markup
    assert 'get_weather({"city": "Oslo"})' in text and "[c1]" in text
    assert "result of c1" in text and "rain, 4 °C" in text
    assert text.index("user") < text.index("get_weather") < text.index("Rainy")


def test_sessions_show_of_an_unknown_session_is_an_error(migrated_url: str) -> None:
    result = cli("--url", migrated_url, "sessions", "show", "ghost")
    assert result.exit_code == 1
    assert "session not found: 'ghost'" in result.stderr


def test_sessions_delete_removes_a_session_and_reports_an_unknown_one(migrated_url: str) -> None:
    record_chat(migrated_url)
    deleted = ok("--url", migrated_url, "sessions", "delete", "chat", "--yes")
    assert "Deleted session 'chat'" in deleted.stdout
    with Store(StoreConfig(url=migrated_url)) as store:
        assert store.list() == []
    missing = cli("--url", migrated_url, "sessions", "delete", "chat", "--yes")
    assert missing.exit_code == 1 and "session not found" in missing.stderr
    ok("--url", migrated_url, "sessions", "delete", "chat", "--missing-ok")


# --- stats, reap ----------------------------------------------------------------------------


def test_stats_shows_the_three_analytics_views(migrated_url: str) -> None:
    empty = ok("--url", migrated_url, "stats").stdout
    assert empty.count("no data yet") == 3
    record_chat(migrated_url, "chat-1", "helper")
    record_chat(migrated_url, "chat-2", "other")
    text = ok("--url", migrated_url, "stats").stdout
    for title in ("Sessions", "Tool usage per day", "Daily activity"):
        assert title in text
    assert "get_weather" in text and "tool_call_count" in text
    only = ok("--url", migrated_url, "stats", "--agent", "other").stdout
    assert "chat-2" in only and "chat-1" not in only


def expire(url: str, *session_ids: str) -> None:
    with Store(StoreConfig(url=url)) as store, store.engine.begin() as conn:
        conn.execute(
            update(sessions)
            .where(sessions.c.id.in_(session_ids))
            .values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1))
        )


def test_reap_deletes_expired_sessions_and_prints_how_many(migrated_url: str) -> None:
    for sid in ("old-1", "old-2", "live"):
        record_chat(migrated_url, sid)
    expire(migrated_url, "old-1", "old-2")
    result = ok("--url", migrated_url, "reap", "--batch-size", "1")
    assert "Deleted 2 expired session(s)." in result.stdout
    with Store(StoreConfig(url=migrated_url)) as store, store.engine.connect() as conn:
        assert [row.id for row in conn.execute(sessions.select())] == ["live"]


def test_reap_loop_sweeps_every_interval(migrated_url: str) -> None:
    record_chat(migrated_url, "old")
    expire(migrated_url, "old")
    result = ok("--url", migrated_url, "reap", "--loop", "--interval", "0.01", "--runs", "3")
    lines = [line for line in result.stdout.splitlines() if "Deleted" in line]
    assert [line.split("  ")[-1] for line in lines] == [
        "Deleted 1 expired session(s).",
        "Deleted 0 expired session(s).",
        "Deleted 0 expired session(s).",
    ]


# --- demo and end to end ---------------------------------------------------------------------


def test_demo_records_and_prints_a_conversation_with_its_analytics(migrated_url: str) -> None:
    for _ in range(2):  # re-runnable
        text = ok("--url", migrated_url, "demo").stdout
        assert "Session demo-trip-to-lisbon" in text
        assert "book_table" in text and "Error: no table" in text
        assert "total_messages" in text and "tool_usage" in text and "daily_activity" in text
    with Store(StoreConfig(url=migrated_url)) as store:
        assert store.list() == [DEMO_SESSION_ID]
        assert len(store.get_if_exists(DEMO_SESSION_ID).messages) == 12


def entry_point() -> list[str]:
    script = Path(sys.executable).with_name("sqlsessions")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from sqlsessions.cli import main; main()"]


def run_cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SQLSESSIONS_")}
    environment.update(env, COLUMNS="160")
    return subprocess.run(
        [*entry_point(), *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.sqlite
def test_demo_works_with_zero_configuration_in_a_fresh_directory(tmp_path: Path) -> None:
    for _ in range(2):
        result = run_cli(["demo"], tmp_path)
        assert result.returncode == 0, result.stderr
        assert "Recorded a demo conversation in sqlite:///sessions.db" in result.stdout
    assert (tmp_path / "sessions.db").is_file()
    shown = run_cli(["sessions", "show", DEMO_SESSION_ID], tmp_path)
    assert shown.returncode == 0 and "JV-4471" in shown.stdout


def test_the_installed_command_migrates_imports_and_exports_through_the_environment_url(
    db_url: str, tmp_path: Path
) -> None:
    env = {"SQLSESSIONS_DATABASE_URL": db_url}
    assert run_cli(["db", "upgrade"], tmp_path, **env).returncode == 0
    doc = '{"id": "e2e", "messages": [{"role": "user", "content": "x"}]}\n'
    (tmp_path / "in.jsonl").write_text(doc)
    imported = run_cli(["import", "in.jsonl"], tmp_path, **env)
    assert imported.returncode == 0, imported.stderr
    exported = run_cli(["export"], tmp_path, **env)
    assert exported.stdout.startswith('{"id":"e2e","messages":[{"role":"user","content":"x"}]')
    broken = run_cli(["sessions", "show", "nope"], tmp_path, **env)
    assert broken.returncode == 1 and "Traceback" not in broken.stderr


def test_the_schema_option_puts_everything_in_that_postgresql_schema(postgres_url: str) -> None:
    base = ("--url", postgres_url, "--schema", "agents")
    ok(*base, "db", "upgrade")
    assert "(head)" in ok(*base, "db", "current").stdout
    assert "none" in ok("--url", postgres_url, "db", "current").stdout  # public is untouched
    ok(*base, "demo")
    assert "book_table" in ok(*base, "stats").stdout
    assert DEMO_SESSION_ID in ok(*base, "sessions", "list").stdout
    assert "matches the migrations" in ok(*base, "db", "check").stdout
    ok(*base, "db", "downgrade", "base", "--yes")


# --- safety: confirmation, no accidental databases, which database, version ------------------


def test_destructive_commands_refuse_without_yes_when_nobody_can_be_asked(
    migrated_url: str,
) -> None:
    record_chat(migrated_url)
    for command in (["db", "downgrade", "base"], ["sessions", "delete", "chat"]):
        result = cli("--url", migrated_url, *command)
        assert result.exit_code == 1
        errors = result.stderr.strip().splitlines()
        assert errors[-1].startswith("Error: refusing to") and "without --yes" in errors[-1]
    assert f"{head_revision()} (head)" in ok("--url", migrated_url, "db", "current").stdout
    with Store(StoreConfig(url=migrated_url)) as store:
        assert store.list() == ["chat"]


def test_destructive_commands_ask_and_do_nothing_unless_the_answer_is_yes(
    migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sqlsessions.cli.common.is_interactive", lambda: True)
    record_chat(migrated_url)
    declined = cli("--url", migrated_url, "sessions", "delete", "chat", input="n\n")
    assert declined.exit_code == 1 and "cancelled; nothing was changed" in declined.stderr
    assert "delete session 'chat' and its 4 message(s)" in declined.stderr
    with Store(StoreConfig(url=migrated_url)) as store:
        assert store.list() == ["chat"]
    accepted = cli("--url", migrated_url, "sessions", "delete", "chat", input="y\n")
    assert accepted.exit_code == 0, accepted.output
    with Store(StoreConfig(url=migrated_url)) as store:
        assert store.list() == []
    downgraded = cli("--url", migrated_url, "db", "downgrade", "base", input="y\n")
    assert downgraded.exit_code == 0, downgraded.output
    assert "data is dropped" in downgraded.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["sessions", "list"],
        ["sessions", "show", "x"],
        ["sessions", "delete", "x", "--yes"],
        ["export"],
        ["stats"],
        ["reap"],
        ["db", "current"],
        ["db", "check"],
        ["db", "downgrade", "base", "--yes"],
    ],
    ids=" ".join,
)
def test_read_commands_never_create_a_missing_sqlite_database(
    tmp_path: Path, command: list[str]
) -> None:
    path = tmp_path / "typo.db"
    result = cli("--url", f"sqlite:///{path}", *command)
    assert result.exit_code == 1
    assert f"no database at sqlite:///{path}: the file {path} does not exist" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not path.exists()


def test_every_command_says_which_database_it_opened_with_the_password_masked(
    migrated_url: str,
) -> None:
    record_chat(migrated_url)
    shown_url = make_url(migrated_url).render_as_string(hide_password=True)
    for command in (["sessions", "list"], ["export"], ["stats"], ["db", "current"], ["reap"]):
        assert f"Database: {shown_url}" in ok("--url", migrated_url, *command).stderr
    secret = "postgresql://someone:pa55-secret@127.0.0.1:9/nowhere"
    failed = cli("--url", secret, "sessions", "list")
    assert "Database: postgresql://someone:***@127.0.0.1:9/nowhere" in failed.stderr
    assert "pa55-secret" not in failed.output


def test_version_is_printed_by_the_command_and_exposed_by_the_package() -> None:
    import sqlsessions

    assert sqlsessions.__version__ == version("sqlsessions")
    assert ok("--version").stdout.strip() == f"sqlsessions {sqlsessions.__version__}"


def test_cli_errors_are_one_line_without_a_traceback(migrated_url: str, tmp_path: Path) -> None:
    cases = [
        ["db", "upgrade", "9999"],
        ["db", "downgrade", "not-a-revision", "--yes"],
        ["sessions", "show", "\x00"],
        ["export", "-o", str(tmp_path / "missing-dir" / "out.jsonl")],
    ]
    for command in cases:
        result = cli("--url", migrated_url, *command)
        assert result.exit_code == 1, (command, result.output)
        errors = [line for line in result.stderr.splitlines() if not line.startswith("Database:")]
        assert len(errors) == 1 and errors[0].startswith("Error: "), (command, result.stderr)
        assert "Traceback" not in result.output
