"""Migrations: the stairway, drift against the models, commands, and schema readiness."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from sqlsessions import Message, Role, SchemaNotReadyError, Store, StoreConfig, migrate
from sqlsessions.migrate import check, current, downgrade, head_revision, history

ROOT = Path(__file__).resolve().parents[1]
TABLES = {"sessions", "messages", "tool_calls", "session_metadata"}


def table_names(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_stairway_upgrade_downgrade_upgrade_leaves_no_drift(db_url: str) -> None:
    revisions = [rev for rev, _, _ in reversed(history())]
    for revision in revisions:
        migrate(db_url, revision)
        assert current(db_url) == revision
    assert check(db_url) == []
    for revision in reversed(["base", *revisions[:-1]]):
        downgrade(db_url, revision)
        assert current(db_url) == (None if revision == "base" else revision)
    assert table_names(db_url) & TABLES == set()
    migrate(db_url)
    assert current(db_url) == head_revision()
    assert table_names(db_url) >= TABLES
    assert check(db_url) == []


def test_version_table_does_not_collide_with_the_host_applications_alembic(db_url: str) -> None:
    migrate(db_url)
    names = table_names(db_url)
    assert "sqlsessions_alembic_version" in names
    assert "alembic_version" not in names


def test_check_reports_drift_when_a_column_is_changed_by_hand(db_url: str) -> None:
    migrate(db_url)
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE messages ADD COLUMN surprise INTEGER"))
    engine.dispose()
    problems = check(db_url)
    assert any("surprise" in problem for problem in problems)


def test_check_reports_a_database_behind_the_migrations(db_url: str) -> None:
    assert any("revision none" in problem for problem in check(db_url))


def test_postgres_store_on_an_unmigrated_database_names_the_upgrade_command(
    postgres_url: str,
) -> None:
    with (
        Store(StoreConfig(url=postgres_url)) as store,
        pytest.raises(SchemaNotReadyError, match="sqlsessions db upgrade"),
    ):
        store.get("x")
    assert table_names(postgres_url) & TABLES == set()


def test_sqlite_store_migrates_itself_on_first_use(sqlite_url: str) -> None:
    with Store(StoreConfig(url=sqlite_url)) as store:
        store.get("x")
    assert current(sqlite_url) == head_revision()


def test_alembic_upgrade_head_works_from_the_checkout(db_url: str) -> None:
    env = {"SQLSESSIONS_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "head"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert current(db_url) == head_revision()


def test_the_built_wheel_ships_the_migrations(tmp_path: Path) -> None:
    import zipfile

    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("sqlsessions-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "sqlsessions/_migrations/env.py" in names
    assert "sqlsessions/_migrations/versions/0001_initial_schema.py" in names


def append_routines(url: str) -> set[tuple[str, str]]:
    """(schema, kind) of each `sqlsessions_append` routine: kind "p" for a procedure, "f" for
    a function."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                (schema, kind)
                for schema, kind in conn.execute(
                    text(
                        "SELECT n.nspname, p.prokind FROM pg_proc p JOIN pg_namespace n"
                        " ON n.oid = p.pronamespace WHERE p.proname = 'sqlsessions_append'"
                    )
                )
            }
    finally:
        engine.dispose()


def test_the_append_procedure_lives_in_the_stores_schema_and_leaves_with_its_migrations(
    postgres_url: str,
) -> None:
    migrate(postgres_url, schema="agents")
    assert append_routines(postgres_url) == {("agents", "p")}
    # The URL does not put the schema on the search path: the store must name it.
    with Store(StoreConfig(url=postgres_url, schema="agents")) as store:
        store.append("s", Message(role=Role.USER, content="one"))  # creates the session
        version = store.append(
            "s",
            Message(role=Role.ASSISTANT, content="two"),
            Message(role=Role.USER, content="three"),
        )
        assert version == 2
        assert [m.content for m in store.get("s").messages] == ["one", "two", "three"]
    downgrade(postgres_url, "0009", schema="agents")  # 0009 made it a function
    assert append_routines(postgres_url) == {("agents", "f")}
    downgrade(postgres_url, "0008", schema="agents")
    assert append_routines(postgres_url) == set()
    migrate(postgres_url, schema="agents")
    assert append_routines(postgres_url) == {("agents", "p")}
