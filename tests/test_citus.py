"""Citus: `db distribute`, migrations on distributed tables, and the reaper on a real cluster.

The store's behaviour on Citus is the whole behaviour suite's `[citus]` variant (conftest);
this module covers what only exists there.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text, update
from sqlalchemy.pool import NullPool
from typer.testing import CliRunner

import workers
from sqlsessions import Message, Role, SqlSessionsError, Store, StoreConfig, migrate
from sqlsessions.cli import app
from sqlsessions.distribute import DISTRIBUTION_COLUMNS, distribute
from sqlsessions.errors import CitusUnavailableError, SchemaNotReadyError
from sqlsessions.migrate import check, current, downgrade, head_revision
from sqlsessions.operations import Transaction
from sqlsessions.reaper import reap_batch_on_citus
from sqlsessions.schema import sessions
from test_production import bulk_sessions, set_expiry, spawn_pool

ROOT = Path(__file__).resolve().parents[1]
VERSION_TABLE = "sqlsessions_alembic_version"


def placements(url: str, schema: str | None = None) -> dict[str, tuple[str, str | None, int]]:
    """{table: (partmethod, distribution column, co-location group)} for our tables."""
    names = [name for name, _ in DISTRIBUTION_COLUMNS] + [VERSION_TABLE]
    engine = create_engine(url, poolclass=NullPool)
    found = {}
    with engine.connect() as conn:
        for name in names:
            qualified = f'"{schema}"."{name}"' if schema else name
            row = conn.execute(
                text(
                    "SELECT partmethod, column_to_column_name(logicalrelid, partkey) AS col,"
                    " colocationid FROM pg_dist_partition"
                    " WHERE logicalrelid = to_regclass(:name)"
                ),
                {"name": qualified},
            ).first()
            if row is not None:
                found[name] = (row.partmethod, row.col, row.colocationid)
    engine.dispose()
    return found


def assert_distributed_by_session(url: str, schema: str | None = None) -> None:
    found = placements(url, schema)
    groups = {found[name][2] for name, _ in DISTRIBUTION_COLUMNS}
    assert {name: found[name][:2] for name, _ in DISTRIBUTION_COLUMNS} == {
        name: ("h", column) for name, column in DISTRIBUTION_COLUMNS
    }
    assert len(groups) == 1  # co-located: one session's rows share a shard
    assert found[VERSION_TABLE][0] == "n"  # reference table


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def add_chat(store: Any, session_id: str) -> None:
    store.append(session_id, Message(role=Role.USER, content=f"hello {session_id}"))
    session = store.get(session_id)
    session.set_metadata("channel", "slack")
    session.add_message(Role.ASSISTANT, "hi")
    store.save(session)


# --- db distribute -------------------------------------------------------------------------


def test_db_distribute_shards_every_table_by_session_colocated_once(citus_url: str) -> None:
    migrate(citus_url)
    first = cli("--url", citus_url, "db", "distribute", "--shard-count", "4")
    assert first.exit_code == 0, first.output
    assert "distributed sessions, messages, tool_calls, session_metadata" in first.stdout
    assert_distributed_by_session(citus_url)
    again = cli("--url", citus_url, "db", "distribute")
    assert again.exit_code == 0, again.output
    assert "already distributed by session: nothing to do" in again.stdout
    assert not distribute(citus_url).changed


def test_migrate_with_distribute_gives_a_working_store_in_a_named_schema(
    citus_server_url: str,
) -> None:
    url = citus_server_url  # the database's own search path: only `schema` places the tables
    schema = f"agents_{uuid.uuid4().hex[:8]}"
    try:
        migrate(url, schema=schema, distribute=True)
        assert_distributed_by_session(url, schema)
        with Store(StoreConfig(url=url, schema=schema)) as store:
            exercise_a_store(store)
    finally:
        engine = create_engine(url, poolclass=NullPool)
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


def exercise_a_store(store: Any) -> None:
    for i in range(5):
        add_chat(store, f"chat-{i}")
    assert store.list() == [f"chat-{i}" for i in range(5)]
    assert [m.content for m in store.get("chat-3").messages] == ["hello chat-3", "hi"]
    assert len(store.list_sessions(metadata={"channel": "slack"}).sessions) == 5
    with store.engine.begin() as conn:  # the store's engine maps the tables to its schema
        conn.execute(
            update(sessions)
            .where(sessions.c.id < "chat-2")
            .values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1))
        )
    assert store.reap_expired(batch_size=1) == 2
    assert store.list() == ["chat-2", "chat-3", "chat-4"]


def test_distribute_refuses_in_one_line_without_citus(postgres_url: str) -> None:
    migrate(postgres_url)
    with pytest.raises(CitusUnavailableError, match="not a Citus coordinator") as raised:
        distribute(postgres_url)
    assert isinstance(raised.value, SqlSessionsError)
    result = cli("--url", postgres_url, "db", "distribute")
    assert result.exit_code == 1
    database, error = result.stderr.strip().splitlines()  # which database, then one line
    assert database.startswith("Database: postgresql")
    assert error == "Error: this database is not a Citus coordinator (no citus extension)"


def test_distribute_before_upgrade_says_to_run_db_upgrade(citus_url: str) -> None:
    with pytest.raises(SchemaNotReadyError, match="sqlsessions db upgrade"):
        distribute(citus_url)
    assert placements(citus_url) == {}


# --- migrations on distributed tables --------------------------------------------------------


def test_migrations_keep_working_after_distribution_and_keep_the_data(citus_url: str) -> None:
    migrate(citus_url, "0003")
    distribute(citus_url, shard_count=4)
    engine = create_engine(citus_url, poolclass=NullPool)
    with engine.begin() as conn:  # data written at 0003, before the later migrations
        conn.execute(
            text(
                "INSERT INTO sessions (id, agent_id, created_at, updated_at, version,"
                " rewrite_version, last_seq, message_count)"
                " VALUES ('old', 'bot', now(), now(), 1, 1, 1, 1)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO messages (session_id, seq, role, content, created_at)"
                " VALUES ('old', 1, 'user', 'from 0003', now())"
            )
        )
    engine.dispose()
    migrate(citus_url)
    assert current(citus_url) == head_revision()
    assert check(citus_url) == []
    downgrade(citus_url, "0003")
    migrate(citus_url)
    assert check(citus_url) == []
    assert_distributed_by_session(citus_url)
    with Store(StoreConfig(url=citus_url)) as store:
        store.append("old", Message(role=Role.USER, content="at head"))
        assert [m.content for m in store.get("old").messages] == ["from 0003", "at head"]


def test_a_cluster_distributed_before_owners_upgrades_and_keeps_owners_apart(
    citus_url: str,
) -> None:
    migrate(citus_url, "0006")
    distribute(citus_url, shard_count=4)
    engine = create_engine(citus_url, poolclass=NullPool)
    with engine.begin() as conn:  # written at 0006, before owners existed
        conn.execute(
            text(
                "INSERT INTO sessions (id, agent_id, created_at, updated_at, version,"
                " rewrite_version, last_seq, message_count)"
                " VALUES ('chat', 'bot', now(), now(), 1, 1, 1, 1)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO messages (session_id, seq, role, content, created_at)"
                " VALUES ('chat', 1, 'user', 'written at 0006', now())"
            )
        )
    engine.dispose()
    migrate(citus_url)
    assert check(citus_url) == []
    assert_distributed_by_session(citus_url)
    assert distribute(citus_url).changed is False
    with Store(StoreConfig(url=citus_url)) as store:
        alice = store.scoped("alice")
        add_chat(alice, "chat")
        alice.fork("chat", "copy")
        store.replace_history("chat", [Message(role=Role.USER, content="summary")])
        assert [m.content for m in store.get_if_exists("chat").messages] == ["summary"]
        assert [m.content for m in alice.get_if_exists("chat").messages] == ["hello chat", "hi"]
        assert store.archived_segments("chat")[0].message_count == 1
        assert alice.archived_segments("chat") == []
        assert {h.session_id for h in alice.search("hello").hits} == {"chat", "copy"}
    with pytest.raises(SqlSessionsError, match="owner"):
        downgrade(citus_url, "0006")
    with Store(StoreConfig(url=citus_url)) as store:
        store.scoped("alice").delete("chat")
        store.scoped("alice").delete("copy")
    downgrade(citus_url, "0006")
    assert_distributed_by_session(citus_url)
    migrate(citus_url)
    assert check(citus_url) == []
    with Store(StoreConfig(url=citus_url)) as store:
        assert [m.content for m in store.get_if_exists("chat").messages] == ["summary"]


# --- the reaper --------------------------------------------------------------------------------


def finish(steps: Any, execute: Any, result: Any) -> Any:
    """Run an operation's remaining steps, sending `result` to the one it is waiting on."""
    try:
        while True:
            result = execute(*steps.send(result))
    except StopIteration as done:
        return done.value


def test_a_session_revived_during_a_citus_sweep_survives_it(citus_migrated_url: str) -> None:
    with Store(StoreConfig(url=citus_migrated_url)) as store:
        for name in ("revived", "dead"):
            store.append(name, Message(role=Role.USER, content=name))
    set_expiry(citus_migrated_url, datetime.now(timezone.utc) - timedelta(seconds=1))
    engine = create_engine(citus_migrated_url, poolclass=NullPool)
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        steps = reap_batch_on_citus(10, "sessions").steps(Transaction())
        candidates = conn.execute(*next(steps)).freeze()  # the sweep read its candidates...
        assert sorted(row.id for row in candidates().all()) == ["dead", "revived"]
        with engine.begin() as writer:  # ...when a writer revives one of them
            writer.execute(
                text("UPDATE sessions SET expires_at = now() + interval '1 hour' WHERE id = :id"),
                {"id": "revived"},
            )
        reaped = finish(steps, conn.execute, candidates())
    engine.dispose()
    assert reaped.deleted == 1
    with Store(StoreConfig(url=citus_migrated_url)) as store:
        assert store.list() == ["revived"]


def test_a_citus_sweep_whose_candidates_another_reaper_took_goes_on(
    citus_migrated_url: str,
) -> None:
    with Store(StoreConfig(url=citus_migrated_url)) as store:
        for name in ("a", "b", "c"):
            store.append(name, Message(role=Role.USER, content=name))
    set_expiry(citus_migrated_url, datetime.now(timezone.utc) - timedelta(seconds=1))
    engine = create_engine(citus_migrated_url, poolclass=NullPool)
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        steps = reap_batch_on_citus(2, "sessions").steps(Transaction())
        candidates = conn.execute(*next(steps)).freeze()  # a full batch of two candidates...
        with engine.begin() as other:  # ...deleted by another reaper before this one does
            other.execute(text("DELETE FROM sessions WHERE id IN ('a', 'b')"))
        batch = finish(steps, conn.execute, candidates())
    engine.dispose()
    assert batch.deleted == 0
    assert not batch.exhausted  # so reap_expired goes on to the session left ("c")
    with Store(StoreConfig(url=citus_migrated_url)) as store:
        assert store.reap_expired(batch_size=2) == 1
        assert store.list() == []


def entry_point() -> list[str]:
    return [sys.executable, "-c", "from sqlsessions.cli import main; main()"]


def test_sqlsessions_reap_on_citus_deletes_exactly_the_expired_with_two_reapers_and_writers(
    citus_migrated_url: str,
) -> None:
    url = citus_migrated_url
    bulk_sessions(url, 2000)
    set_expiry(url, datetime.now(timezone.utc) - timedelta(seconds=5), "id < 's01000'")
    set_expiry(url, datetime.now(timezone.utc) + timedelta(hours=1), "id >= 's01000'")
    live = [f"s{i:05d}" for i in range(1000, 2000, 10)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "COLUMNS": "200"}
    command = [*entry_point(), "--url", url, "reap", "--batch-size", "50"]
    with spawn_pool(1) as pool:
        writer = pool.apply_async(workers.touch_live, (url, "sync", live, 3))
        reapers = [
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            for _ in range(2)
        ]
        outputs = [reaper.communicate(timeout=300) for reaper in reapers]
        assert writer.get(timeout=300) == len(live) * 3
    assert [reaper.returncode for reaper in reapers] == [0, 0], [e for _, e in outputs]
    deleted = [int(out.decode().split("Deleted ")[1].split()[0]) for out, _ in outputs]
    assert sum(deleted) == 1000
    with Store(StoreConfig(url=url)) as store:
        assert store.list() == [f"s{i:05d}" for i in range(1000, 2000)]
