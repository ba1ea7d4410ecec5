"""Migrations under concurrency and version skew: concurrent upgrades queue, a database newer
than the library is named as such (one line, everywhere), and missing tables are
SchemaNotReadyError."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from sqlsessions import (
    AsyncStore,
    InvalidInputError,
    SchemaNotReadyError,
    StorageError,
    Store,
    StoreConfig,
)
from sqlsessions.cli import app
from sqlsessions.migrate import current, downgrade, head_revision, migrate

FUTURE_REVISION = "9999_from_the_future"


def run_cli_process(url: str, *args: str) -> subprocess.Popen[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SQLSESSIONS_")}
    return subprocess.Popen(
        [sys.executable, "-c", "from sqlsessions.cli import main; main()", "--url", url, *args],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.postgres
def test_concurrent_db_upgrades_of_a_fresh_postgresql_database_all_succeed(
    postgres_url: str,
) -> None:
    processes = [run_cli_process(postgres_url, "db", "upgrade") for _ in range(3)]
    outcomes = [(process.wait(timeout=300), process.stderr.read()) for process in processes]
    for process in processes:
        process.stdout.close()  # type: ignore[union-attr]
        process.stderr.close()  # type: ignore[union-attr]
    assert [code for code, _ in outcomes] == [0, 0, 0], outcomes
    assert current(postgres_url) == head_revision()


def test_concurrent_migrate_calls_in_one_process_all_succeed(db_url: str) -> None:
    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            migrate(db_url)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=upgrade, daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a migration hung"
    assert errors == []
    assert current(db_url) == head_revision()


def stamp(url: str, revision: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE sqlsessions_alembic_version SET version_num = :r"), {"r": revision}
            )
    finally:
        engine.dispose()


def test_a_database_newer_than_the_library_is_named_as_such_by_the_store_and_migrate(
    migrated_url: str,
) -> None:
    stamp(migrated_url, FUTURE_REVISION)
    expected = (
        f"the database is at revision {FUTURE_REVISION}, newer than this sqlsessions "
        f"(knows up to {head_revision()}): upgrade the sqlsessions package"
    )
    for auto_migrate in (None, True, False):
        with Store(StoreConfig(url=migrated_url, auto_migrate=auto_migrate)) as store:
            with pytest.raises(SchemaNotReadyError) as raised:
                store.get("x")
            assert str(raised.value) == expected

    async def async_get() -> None:
        async with AsyncStore(StoreConfig(url=migrated_url)) as store:
            await store.get("x")

    with pytest.raises(SchemaNotReadyError, match="newer than this sqlsessions"):
        asyncio.run(async_get())
    for action in (lambda: migrate(migrated_url), lambda: downgrade(migrated_url, "base")):
        with pytest.raises(SchemaNotReadyError, match="upgrade the sqlsessions package"):
            action()
    assert current(migrated_url) == FUTURE_REVISION  # nothing was changed


@pytest.mark.parametrize(
    "command",
    [
        ["db", "upgrade"],
        ["db", "current"],
        ["db", "check"],
        ["db", "downgrade", "base", "--yes"],
        ["sessions", "list"],
        ["sessions", "show", "x"],
        ["export"],
        ["stats"],
        ["reap"],
    ],
    ids=" ".join,
)
def test_every_command_says_in_one_line_that_the_database_is_newer(
    migrated_url: str, command: list[str]
) -> None:
    stamp(migrated_url, FUTURE_REVISION)
    result = CliRunner().invoke(app, ["--url", migrated_url, *command])
    assert result.exit_code != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert "newer than this sqlsessions" in errors[0]
    assert "upgrade the sqlsessions package" in errors[0]
    assert "Traceback" not in result.output


def test_tables_dropped_under_a_running_store_give_schema_not_ready(
    store: Any, migrated_url: str, db_schema: str | None
) -> None:
    store.append("s", {"role": "user", "content": "hi"})
    downgrade(migrated_url, "base", schema=db_schema)
    store.clear_cache()
    for action in (
        lambda: store.get("s"),
        lambda: store.append("s", {"role": "user", "content": "again"}),
        lambda: store.list_sessions(),
        lambda: store.reap_expired(),
    ):
        with pytest.raises(SchemaNotReadyError, match="sqlsessions db upgrade") as raised:
            action()
        assert not isinstance(raised.value, StorageError)


@pytest.mark.parametrize("revision", ["9999", "base:head", "0001+x", ""])
def test_bad_revisions_are_invalid_input_naming_the_revision(
    migrated_url: str, revision: str
) -> None:
    for action in (migrate, downgrade):
        with pytest.raises(InvalidInputError) as raised:
            action(migrated_url, revision)
        assert raised.value.field == "revision"
    assert current(migrated_url) == head_revision()


def test_db_upgrade_to_an_unknown_revision_is_one_line_without_a_traceback(
    migrated_url: str, tmp_path: Path
) -> None:
    process = run_cli_process(migrated_url, "db", "upgrade", "9999")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1
    assert err.strip().count("\n") == 1, err  # the "Database:" line, then the error
    assert err.splitlines()[-1].startswith("Error: invalid revision: '9999'")
    assert "Traceback" not in err + out
