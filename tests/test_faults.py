"""Faults: server restarts, connections killed mid-save, writers killed by SIGKILL, and SQLite
lock contention. Whatever happens, a session is at one version its writer saved, never between."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, make_url, text
from sqlalchemy.pool import NullPool

import fault_workers
import sqlsessions.engine
from fault_workers import opened_store, run_sql, sync_engine_of, version_messages
from postgres_provision import temporary_database
from sqlsessions import Message, Role, SqlSessionsError, StorageError, ToolCall, ToolFunction

SPAWN = multiprocessing.get_context("spawn")
KINDS = ["sync", "async"]


def stored_snapshot(url: str, session_id: str, **options: Any) -> dict[str, Any]:
    """What a fresh store reads for `session_id`, plus its row bookkeeping."""
    with opened_store(url, "sync", **options) as store:
        session = store.get_if_exists(session_id)
        snapshot: dict[str, Any] = {"json": session.to_json(), "messages": session.messages}
    row = run_sql(
        url,
        "SELECT version, message_count, last_seq FROM sessions WHERE id = :id",
        {"id": session_id},
    )[0]
    counts = run_sql(
        url,
        "SELECT (SELECT COUNT(*) FROM messages WHERE session_id = :id),"
        " (SELECT MAX(seq) FROM messages WHERE session_id = :id),"
        " (SELECT COUNT(*) FROM tool_calls WHERE session_id = :id)",
        {"id": session_id},
    )[0]
    snapshot.update(
        version=row.version,
        message_count=row.message_count,
        last_seq=row.last_seq,
        message_rows=counts[0],
        max_seq=counts[1],
        tool_call_rows=counts[2],
    )
    return snapshot


def assert_bookkeeping_matches_rows(snapshot: dict[str, Any]) -> None:
    assert snapshot["message_count"] == snapshot["message_rows"] == len(snapshot["messages"])
    assert snapshot["max_seq"] is None or snapshot["max_seq"] <= snapshot["last_seq"]
    calls = sum(len(m.tool_calls or ()) for m in snapshot["messages"])
    assert snapshot["tool_call_rows"] == calls


# --- PostgreSQL restarted between two operations -----------------------------------------------


@pytest.fixture(scope="module")
def private_server() -> Iterator[fault_workers.PrivateServer]:
    """A PostgreSQL server this module may restart (never the shared test server)."""
    try:
        with fault_workers.private_postgres() as server:
            yield server
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.fail(f"could not start a private PostgreSQL server: {exc}")


def postmaster_started_at(url: str) -> Any:
    return run_sql(url, "SELECT pg_postmaster_start_time()")[0][0]


def fill_pool(store: Any, connections: int) -> None:
    """Check out `connections` connections at once, so the pool keeps that many."""
    if hasattr(store, "async_store"):
        import asyncio

        async def together() -> None:
            await asyncio.gather(*(store.async_store.list() for _ in range(connections)))

        store._loop.run_until_complete(together())
        return
    threads = [threading.Thread(target=store.list) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.mark.postgres
@pytest.mark.parametrize("kind", KINDS)
def test_the_next_operation_succeeds_after_the_postgresql_server_restarts(
    private_server: fault_workers.PrivateServer, kind: str
) -> None:
    with (
        temporary_database(private_server.url) as url,
        opened_store(url, kind, auto_migrate=True) as store,
    ):
        session = store.get("survivor")
        session.add_message(Role.USER, "before the restart")
        store.save(session)
        fill_pool(store, 4)  # several pooled connections, all about to go stale
        started = postmaster_started_at(url)

        private_server.restart()

        assert postmaster_started_at(url) != started
        # The cached session is validated against the database: a read on a stale connection.
        again = store.get("survivor")
        assert [m.content for m in again.messages] == ["before the restart"]
        again.add_message(Role.ASSISTANT, "after the restart")
        store.save(again)
        store.append("survivor", Message(role=Role.USER, content="appended"))
        store.clear_cache()
        assert [m.content for m in store.get_if_exists("survivor").messages] == [
            "before the restart",
            "after the restart",
            "appended",
        ]
        assert store.list() == ["survivor"]


# --- a connection killed in the middle of a save ------------------------------------------------


class BackendKiller:
    """Terminates the store's own server backend just before its next matching statement."""

    def __init__(self, admin_url: str, pattern: str) -> None:
        self.admin = create_engine(admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        self.pattern = pattern
        self.armed = False
        self.killed: list[int] = []

    def __call__(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        if not self.armed or self.pattern not in " ".join(statement.split()).upper():
            return
        self.armed = False
        pid = conn.connection.driver_connection.info.backend_pid
        with self.admin.connect() as admin:
            terminated = admin.execute(
                text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid}
            ).scalar()
        assert terminated, "the backend was not terminated"
        self.killed.append(pid)


@pytest.fixture
def backend_killer(postgres_url: str) -> Iterator[Any]:
    killers: list[BackendKiller] = []

    def make(store: Any, pattern: str) -> BackendKiller:
        killer = BackendKiller(postgres_url, pattern)
        event.listen(sync_engine_of(store), "before_cursor_execute", killer)
        killers.append(killer)
        return killer

    yield make
    for killer in killers:
        killer.admin.dispose()


def call(i: int) -> ToolCall:
    return ToolCall(id=f"c{i}", function=ToolFunction(name="lookup", arguments=f'{{"i": {i}}}'))


@pytest.mark.parametrize("kind", KINDS)
def test_a_connection_killed_mid_save_raises_a_wrapped_error_and_keeps_the_previous_version(
    postgres_url: str, kind: str, backend_killer: Any
) -> None:
    with opened_store(postgres_url, kind, auto_migrate=True) as store:
        session = store.get("victim")
        for i in range(20):
            session.add_message_with_tool_calls(Role.ASSISTANT, f"m{i}", [call(i)])
        session.set_metadata("step", 1)
        store.save(session)
        before = stored_snapshot(postgres_url, "victim")

        # A save that rewrites: trim (DELETE), new messages (INSERT), metadata (UPSERT).
        session.trim(5)
        session.add_message(Role.USER, "new one")
        session.set_metadata("step", 2)
        killer = backend_killer(store, "INSERT INTO MESSAGES")
        killer.armed = True
        with pytest.raises(StorageError) as caught:
            store.save(session)

        assert killer.killed, "the save never reached its message INSERT"
        assert isinstance(caught.value, SqlSessionsError)
        assert caught.value.__cause__ is not None
        assert "database error" in str(caught.value)
        assert stored_snapshot(postgres_url, "victim") == before

        # The object still knows what is stored, so saving it again lands the change once.
        store.save(session)
        after = stored_snapshot(postgres_url, "victim")
        assert after["messages"] == session.messages
        assert after["version"] == before["version"] + 1
        assert_bookkeeping_matches_rows(after)


@pytest.mark.parametrize("kind", KINDS)
def test_a_new_session_whose_connection_is_killed_mid_save_is_not_created(
    postgres_url: str, kind: str, backend_killer: Any
) -> None:
    from sqlsessions import Session, SessionNotFoundError

    with opened_store(postgres_url, kind, auto_migrate=True) as store:
        store.get("bystander")
        session = Session.new("newborn")
        session.add_message(Role.USER, "hello")
        killer = backend_killer(store, "INSERT INTO MESSAGES")
        killer.armed = True
        with pytest.raises(StorageError):
            store.save(session)
        store.clear_cache()
        with pytest.raises(SessionNotFoundError):
            store.get_if_exists("newborn")
        assert store.list() == ["bystander"]
        store.save(session)
        store.clear_cache()
        assert store.get_if_exists("newborn").messages == session.messages


@pytest.mark.parametrize("kind", KINDS)
def test_an_append_whose_connection_dies_before_it_runs_is_retried_and_lands_once(
    postgres_url: str, kind: str, backend_killer: Any
) -> None:
    with opened_store(postgres_url, kind, auto_migrate=True) as store:
        store.append("log", Message(role=Role.USER, content="first"))
        killer = backend_killer(store, "SQLSESSIONS_APPEND(")
        killer.armed = True
        store.append("log", Message(role=Role.USER, content="second"))
        assert killer.killed
        store.clear_cache()
        assert [m.content for m in store.get_if_exists("log").messages] == ["first", "second"]


# --- a writer process killed with SIGKILL during a save -----------------------------------------


def start_writer(url: str, kind: str, session_id: str, pause_at: int | None = None) -> Any:
    committed = SPAWN.Value("i", 0)
    paused = SPAWN.Event()
    process = SPAWN.Process(
        target=fault_workers.save_versions,
        args=(url, kind, session_id, committed, paused, pause_at),
        daemon=True,
    )
    process.start()
    return process, committed, paused


def kill(process: Any) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.join(30)
    assert process.exitcode == -signal.SIGKILL


def assert_at_a_written_version(url: str, session_id: str, candidates: set[int]) -> int:
    snapshot = stored_snapshot(url, session_id)
    with opened_store(url, "sync") as store:
        iteration = store.get_if_exists(session_id).metadata["iteration"]
    assert iteration in candidates
    assert snapshot["messages"] == version_messages(iteration)
    assert_bookkeeping_matches_rows(snapshot)
    return int(iteration)


def assert_still_writable(url: str, session_id: str) -> None:
    with opened_store(url, "sync") as store:
        session = store.get(session_id)
        session.add_message(Role.USER, "after the crash")
        store.save(session)
        store.append(session_id, Message(role=Role.USER, content="appended after the crash"))
    snapshot = stored_snapshot(url, session_id)
    assert [m.content for m in snapshot["messages"][-2:]] == [
        "after the crash",
        "appended after the crash",
    ]
    assert_bookkeeping_matches_rows(snapshot)


@pytest.mark.parametrize("kind", KINDS)
def test_a_writer_killed_inside_its_save_transaction_leaves_the_previous_version(
    migrated_url: str, kind: str
) -> None:
    # Iteration 6 clears the session and rewrites it: killed after its message INSERT.
    process, committed, paused = start_writer(migrated_url, kind, "big", pause_at=6)
    try:
        assert paused.wait(120), "the writer never reached the paused save"
        kill(process)
    finally:
        if process.is_alive():
            process.kill()
    assert committed.value == 5
    assert assert_at_a_written_version(migrated_url, "big", {5}) == 5
    assert_still_writable(migrated_url, "big")


def test_a_writer_killed_at_a_random_moment_leaves_an_old_or_new_version_never_a_mix(
    migrated_url: str,
) -> None:
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    for _round in range(3):
        process, committed, _ = start_writer(migrated_url, "sync", "big")
        try:
            deadline = time.monotonic() + 120
            target = committed.value + 2
            while committed.value < target and time.monotonic() < deadline:
                time.sleep(0.01)
            assert committed.value >= target, "the writer is not making progress"
            time.sleep(rng.uniform(0, 0.3))
            kill(process)
        finally:
            if process.is_alive():
                process.kill()
        last = committed.value
        # The kill may land after a commit but before the writer recorded it.
        assert_at_a_written_version(migrated_url, "big", {last, last + 1})
    assert_still_writable(migrated_url, "big")


# --- SQLite: "database is locked" ---------------------------------------------------------------


def sqlite_path(url: str) -> str:
    database = make_url(url).database
    assert database
    return database


@pytest.fixture
def short_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's own busy wait cut to 20 ms, so contention reaches the store's retry loop."""
    monkeypatch.setattr(sqlsessions.engine, "SQLITE_BUSY_TIMEOUT_SECONDS", 0.02)


class HeldWriteLock:
    """Another connection holding SQLite's write lock (BEGIN IMMEDIATE) until released."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("UPDATE sessions SET agent_id = agent_id")

    def release(self) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


@pytest.fixture
def retried_lock_errors(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The "database is locked" errors the store's retry loop decided to retry."""
    seen: list[str] = []
    original = sqlsessions.engine.is_retryable

    def counting(exc: BaseException) -> bool:
        retryable = original(exc)
        if retryable and "locked" in str(exc):
            seen.append(str(exc))
        return retryable

    monkeypatch.setattr(sqlsessions.engine, "is_retryable", counting)
    return seen


@pytest.mark.parametrize("kind", KINDS)
def test_a_save_waits_out_a_write_lock_held_longer_than_sqlites_busy_timeout(
    sqlite_url: str, kind: str, short_busy_timeout: None, retried_lock_errors: list[str]
) -> None:
    with opened_store(sqlite_url, kind) as store:
        session = store.get("patient")
        blocker = HeldWriteLock(sqlite_path(sqlite_url))
        release = threading.Timer(1.0, blocker.release)
        release.start()
        try:
            session.add_message(Role.USER, "waited")
            started = time.monotonic()
            store.save(session)
            store.append("patient", Message(role=Role.USER, content="appended"))
            waited = time.monotonic() - started
        finally:
            release.join()
        assert retried_lock_errors, "the save never met the lock"
        assert waited >= 0.9  # far beyond SQLite's own 20 ms busy wait: the store retried
        store.clear_cache()
        assert [m.content for m in store.get_if_exists("patient").messages] == [
            "waited",
            "appended",
        ]


@pytest.mark.parametrize("kind", KINDS)
def test_a_lock_that_is_never_released_fails_the_save_after_a_bounded_wait(
    sqlite_url: str, kind: str, short_busy_timeout: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlsessions.engine, "RETRY_BUDGET_SECONDS", 0.5)
    with opened_store(sqlite_url, kind) as store:
        session = store.get("stuck")
        session.add_message(Role.USER, "kept")
        store.save(session)
        session.add_message(Role.USER, "blocked")
        blocker = HeldWriteLock(sqlite_path(sqlite_url))
        try:
            started = time.monotonic()
            with pytest.raises(StorageError, match="locked") as caught:
                store.save(session)
            assert time.monotonic() - started < 10
            assert caught.value.__cause__ is not None
        finally:
            blocker.release()
        store.clear_cache()
        assert [m.content for m in store.get_if_exists("stuck").messages] == ["kept"]
        store.save(session)  # the same object saves once the lock is gone
        store.clear_cache()
        assert [m.content for m in store.get_if_exists("stuck").messages] == ["kept", "blocked"]


def test_concurrent_writers_in_several_processes_and_threads_all_succeed_on_sqlite(
    sqlite_url: str,
) -> None:
    with opened_store(sqlite_url, "sync") as store:
        store.get("shared")
    processes, threads, rounds = 3, 2, 15
    with SPAWN.Pool(processes) as pool:
        done = pool.starmap(
            fault_workers.contend_on_sqlite,
            [(sqlite_url, worker, threads, rounds, 0.01) for worker in range(processes)],
        )
    assert done == [threads * rounds * 2] * processes
    with opened_store(sqlite_url, "sync") as store:
        for worker in range(processes):
            for thread in range(threads):
                session = store.get_if_exists(f"w{worker}-t{thread}")
                assert [m.content for m in session.messages] == [
                    f"w{worker}-t{thread}-{r}" for r in range(rounds)
                ]
        shared = [m.content for m in store.get_if_exists("shared").messages]
    assert sorted(shared) == sorted(
        f"w{w}-t{t}-{r}" for w in range(processes) for t in range(threads) for r in range(rounds)
    )


@pytest.mark.parametrize("kind", KINDS)
def test_a_write_landing_during_the_first_use_migration_of_sqlite_does_not_fail_it(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "fresh.db"
    sqlite3.connect(path).execute("PRAGMA journal_mode=WAL").close()
    interleaved: list[str] = []

    def another_writer_commits(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        if interleaved or not statement.lstrip().upper().startswith("CREATE TABLE"):
            return
        interleaved.append(statement)
        other = sqlite3.connect(path, timeout=0.1, isolation_level=None)
        try:  # blocked (and skipped) if the migration already holds the write lock
            other.execute("CREATE TABLE IF NOT EXISTS host_application (x INTEGER)")
        except sqlite3.OperationalError:
            pass
        finally:
            other.close()

    with opened_store(f"sqlite:///{path}", kind) as store:
        event.listen(sync_engine_of(store), "before_cursor_execute", another_writer_commits)
        session = store.get("first")
        assert interleaved
        session.add_message(Role.USER, "migrated despite the other writer")
        store.save(session)
        store.clear_cache()
        assert store.get_if_exists("first").messages == session.messages


def test_several_processes_opening_a_fresh_sqlite_file_at_once_all_succeed(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    start = SPAWN.Event()
    failures = SPAWN.Queue()
    processes = [
        SPAWN.Process(target=fault_workers.first_use, args=(url, worker, start, failures))
        for worker in range(4)
    ]
    for process in processes:
        process.start()
    time.sleep(1.0)  # let every interpreter import sqlsessions and wait at the start line
    start.set()
    for process in processes:
        process.join(120)
    errors = []
    while not failures.empty():
        errors.append(failures.get())
    assert errors == []
    assert [process.exitcode for process in processes] == [0] * 4
    with opened_store(url, "sync") as store:
        assert sorted(store.list()) == [f"first-{w}" for w in range(4)]
