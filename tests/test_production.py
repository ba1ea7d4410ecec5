"""Production semantics: concurrent writers, coherent caches, listing, history, reaping."""

from __future__ import annotations

import json
import multiprocessing
import re
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import create_engine, text

import workers
from sqlsessions import (
    ConflictError,
    InvalidInputError,
    Message,
    Role,
    SessionNotFoundError,
    ToolCall,
    ToolFunction,
)
from store_fixtures import recorded_statements


def spawn_pool(size: int) -> Any:
    return multiprocessing.get_context("spawn").Pool(size)


def stored_contents(url: str, session_id: str) -> list[str]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT content FROM messages WHERE session_id = :id ORDER BY seq"),
            {"id": session_id},
        ).scalars()
        result = list(rows)
    engine.dispose()
    return result


def set_expiry(url: str, expires_at: datetime, where: str = "1 = 1") -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE sessions SET expires_at = :t WHERE {where}"), {"t": expires_at})
    engine.dispose()


def call(i: int) -> ToolCall:
    return ToolCall(id=f"call-{i}", function=ToolFunction(name="lookup", arguments="{}"))


# --- append ------------------------------------------------------------------------------


def test_append_creates_the_session_and_returns_increasing_versions(store: Any) -> None:
    first = store.append("new", Message(role=Role.USER, content="a"))
    second = store.append(
        "new",
        {"role": "assistant", "content": "", "tool_calls": [call(1).model_dump()]},
        Message(role=Role.TOOL, content="r", tool_call_id="call-1"),
    )
    assert second > first
    loaded = store.get_if_exists("new")
    assert [m.content for m in loaded.messages] == ["a", "", "r"]
    assert loaded.messages[1].tool_calls == (call(1),)


def test_append_on_an_expired_session_starts_a_fresh_one(store: Any, migrated_url: str) -> None:
    store.append("old", Message(role=Role.USER, content="stale"))
    set_expiry(migrated_url, datetime.now(timezone.utc) - timedelta(seconds=1))
    store.append("old", Message(role=Role.USER, content="fresh"))
    assert [m.content for m in store.get_if_exists("old").messages] == ["fresh"]


def test_append_rejects_bad_messages_and_writes_nothing(store: Any) -> None:
    with pytest.raises(InvalidInputError, match=r"messages\[1\]"):
        store.append("x", Message(role=Role.USER, content="ok"), 42)
    with pytest.raises(InvalidInputError, match=r"messages\[0\]\.role"):
        store.append("x", {"role": "wizard", "content": "nope"})
    with pytest.raises(InvalidInputError, match="messages"):
        store.append("x")
    assert store.list() == []


def test_a_session_loaded_before_an_append_conflicts_on_save(store: Any, open_store: Any) -> None:
    session = store.get("shared")
    open_store().append("shared", Message(role=Role.USER, content="from elsewhere"))
    session.add_message(Role.USER, "stale")
    with pytest.raises(ConflictError):
        store.save(session)


@pytest.mark.parametrize("processes", [4])
def test_concurrent_appends_from_many_processes_lose_and_duplicate_nothing(
    migrated_url: str, store_kind: str, processes: int
) -> None:
    per_worker = 250
    with spawn_pool(processes) as pool:
        results = pool.starmap(
            workers.append_many,
            [(migrated_url, store_kind, "hot", w, per_worker) for w in range(processes)],
        )
    assert sum(results) == processes * per_worker
    contents = stored_contents(migrated_url, "hot")
    assert len(contents) == processes * per_worker
    assert Counter(contents) == Counter(
        f"w{w}-{i}" for w in range(processes) for i in range(per_worker)
    )
    for w in range(processes):  # each worker's messages keep their order
        mine = [c for c in contents if c.startswith(f"w{w}-")]
        assert mine == [f"w{w}-{i}" for i in range(per_worker)]


def test_concurrent_load_modify_save_never_loses_a_landed_update(
    migrated_url: str, store_kind: str, store: Any
) -> None:
    store.get("contended")
    with spawn_pool(4) as pool:
        results = pool.starmap(
            workers.load_add_save,
            [(migrated_url, store_kind, "contended", w, 40) for w in range(4)],
        )
    landed = [content for worker in results for content in worker]
    assert landed, "at least some saves must land"
    assert sorted(stored_contents(migrated_url, "contended")) == sorted(landed)


# --- cache coherence -----------------------------------------------------------------------


def test_a_change_saved_through_one_store_is_seen_by_another(open_store: Any) -> None:
    a, b = open_store(), open_store()
    session = a.get("c")
    session.add_message(Role.USER, "one")
    a.save(session)
    assert [m.content for m in b.get("c").messages] == ["one"]
    session.set_metadata("k", "v")
    session.trim(0)
    session.add_message(Role.USER, "two")
    a.save(session)
    seen = b.get("c")
    assert [m.content for m in seen.messages] == ["two"]
    assert seen.metadata == {"k": "v"}


def test_cached_get_of_an_unchanged_session_issues_exactly_one_query(store: Any) -> None:
    session = store.get("cached")
    session.messages.extend(Message(role=Role.USER, content=str(i)) for i in range(50))
    store.save(session)
    store.get("cached")
    with recorded_statements(store.engine) as log:
        again = store.get("cached")
    assert len(log.statements) == 1
    assert log.statements[0].lstrip().upper().startswith("SELECT")
    assert len(again.messages) == 50


def test_cached_session_catches_up_on_appends_by_fetching_only_new_rows(
    store: Any, open_store: Any
) -> None:
    session = store.get("tail")
    session.messages.extend(Message(role=Role.USER, content=str(i)) for i in range(30))
    store.save(session)
    store.get("tail")
    open_store().append("tail", Message(role=Role.ASSISTANT, content="new"))
    with recorded_statements(store.engine) as log:
        seen = store.get("tail")
    assert [m.content for m in seen.messages][-2:] == ["29", "new"]
    message_selects = [sql for sql in log.statements if re.search(r"FROM (\w+\.)?messages", sql)]
    assert len(message_selects) == 1
    assert "seq >" in message_selects[0]
    seen.add_message(Role.USER, "after catch-up")
    store.save(seen)
    assert len(open_store().get("tail").messages) == 32


def test_a_cached_session_deleted_elsewhere_is_not_served(open_store: Any) -> None:
    a, b = open_store(), open_store()
    a.get("gone").add_message(Role.USER, "x")
    b.delete("gone")
    with pytest.raises(SessionNotFoundError):
        a.get_if_exists("gone")


# --- listing -------------------------------------------------------------------------------


def bulk_sessions(url: str, count: int, agents: int = 3) -> None:
    """Insert `count` sessions directly (fast), spread over agents and update times."""
    base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    engine = create_engine(url)
    from sqlsessions.schema import session_metadata, sessions

    rows = [
        {
            "id": f"s{i:05d}",
            "agent_id": f"agent-{i % agents}",
            "created_at": base,
            "updated_at": base + timedelta(seconds=i // 2),  # ties on purpose
            "expires_at": None,
            "version": 1,
            "rewrite_version": 1,
            "last_seq": 0,
            "message_count": i % 7,
        }
        for i in range(count)
    ]
    meta = [
        {"session_id": f"s{i:05d}", "key": "tier", "value": "gold" if i % 5 == 0 else "free"}
        for i in range(count)
    ]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":  # COPY: fast on Citus too (per-row routing)
            copy_rows(conn, sessions.name, rows)
            copy_rows(
                conn, session_metadata.name, [{**m, "value": json.dumps(m["value"])} for m in meta]
            )
        else:
            conn.execute(sessions.insert(), rows)
            conn.execute(session_metadata.insert(), meta)
    engine.dispose()


def copy_rows(conn: Any, table: str, rows: list[dict[str, Any]]) -> None:
    """COPY `rows` (dicts with the same keys) into `table` on PostgreSQL."""
    columns = list(rows[0])
    cursor = conn.connection.driver_connection.cursor()
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[column] for column in columns])


def page_through(store: Any, **filters: Any) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        page = store.list_sessions(cursor=cursor, **filters)
        seen.extend(summary.id for summary in page.sessions)
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


def test_list_sessions_pages_through_every_session_exactly_once(
    store: Any, migrated_url: str
) -> None:
    bulk_sessions(migrated_url, 10_000)
    seen = page_through(store, limit=1000)
    assert len(seen) == 10_000
    assert len(set(seen)) == 10_000
    gold_of_agent_1 = page_through(store, agent_id="agent-1", metadata={"tier": "gold"}, limit=97)
    expected = {f"s{i:05d}" for i in range(10_000) if i % 3 == 1 and i % 5 == 0}
    assert sorted(gold_of_agent_1) == sorted(expected)
    assert len(gold_of_agent_1) == len(set(gold_of_agent_1))


def test_list_sessions_orders_by_update_newest_first_with_summaries(store: Any) -> None:
    for name in ("a", "b", "c"):
        session = store.get(name)
        session.agent_id = "bot"
        session.add_message(Role.USER, name)
        store.save(session)
    page = store.list_sessions(limit=2)
    assert [s.id for s in page.sessions] == ["c", "b"]
    assert page.sessions[0].message_count == 1
    assert page.sessions[0].agent_id == "bot"
    assert page.sessions[0].expires_at is not None
    rest = store.list_sessions(limit=2, cursor=page.next_cursor)
    assert [s.id for s in rest.sessions] == ["a"]
    assert rest.next_cursor is None


def test_list_sessions_filters_by_update_time(store: Any, migrated_url: str) -> None:
    bulk_sessions(migrated_url, 100)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    ids = page_through(
        store,
        updated_after=start + timedelta(seconds=10),
        updated_before=start + timedelta(seconds=20),
    )
    assert sorted(ids) == [f"s{i:05d}" for i in range(22, 40)]


def test_list_sessions_rejects_bad_arguments(store: Any) -> None:
    for kwargs, field in (
        ({"limit": 0}, "limit"),
        ({"limit": "10"}, "limit"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"metadata": {"k": float("nan")}}, "metadata"),
    ):
        with pytest.raises(InvalidInputError, match=field):
            store.list_sessions(**kwargs)


def test_list_keeps_its_original_meaning(store: Any, migrated_url: str) -> None:
    bulk_sessions(migrated_url, 1500)
    assert len(store.list()) == 1500


# --- history -------------------------------------------------------------------------------


def test_history_returns_the_last_messages(store: Any) -> None:
    for i in range(20):
        store.append("h", Message(role=Role.USER, content=str(i)))
    assert [m.content for m in store.history("h", limit=5)] == ["15", "16", "17", "18", "19"]
    assert len(store.history("h")) == 20


def test_history_widens_to_include_the_assistant_call_of_leading_tool_results(store: Any) -> None:
    store.append("t", Message(role=Role.USER, content="q"))
    store.append(
        "t",
        Message(role=Role.ASSISTANT, content="", tool_calls=[call(1), call(2), call(3)]),
        Message(role=Role.TOOL, content="r1", tool_call_id="call-1"),
        Message(role=Role.TOOL, content="r2", tool_call_id="call-2"),
        Message(role=Role.TOOL, content="r3", tool_call_id="call-3"),
        Message(role=Role.ASSISTANT, content="answer"),
    )
    window = store.history("t", limit=3)
    assert window[0].role is Role.ASSISTANT
    assert window[0].tool_calls == (call(1), call(2), call(3))
    assert [m.content for m in window[1:]] == ["r1", "r2", "r3", "answer"]


def test_history_widens_past_a_long_run_of_tool_results_to_their_call(store: Any) -> None:
    calls = [call(i) for i in range(40)]  # more results than a window reads ahead
    store.append("many", Message(role=Role.USER, content="q"))
    store.append(
        "many",
        Message(role=Role.ASSISTANT, content="", tool_calls=calls),
        *(Message(role=Role.TOOL, content=f"r{i}", tool_call_id=f"call-{i}") for i in range(40)),
    )
    window = store.history("many", limit=5)
    assert window[0].role is Role.ASSISTANT
    assert window[0].tool_calls == tuple(calls)  # every call, in its order
    assert [m.content for m in window[1:]] == [f"r{i}" for i in range(40)]


def test_history_drops_tool_results_whose_call_was_trimmed_away(store: Any) -> None:
    session = store.get("orphan")
    session.add_message_with_tool_calls(Role.ASSISTANT, "", [call(1)])
    session.add_tool_result("call-1", "r1")
    session.add_message(Role.ASSISTANT, "done")
    store.save(session)
    session.trim(2)
    store.save(session)
    assert [m.content for m in store.history("orphan", limit=2)] == ["done"]


def test_history_of_a_missing_session_raises_not_found(store: Any) -> None:
    with pytest.raises(SessionNotFoundError):
        store.history("nope")
    with pytest.raises(InvalidInputError, match="limit"):
        store.history("nope", limit=-1)


# --- reaper --------------------------------------------------------------------------------


def test_reap_expired_deletes_expired_sessions_with_all_their_rows(
    store: Any, migrated_url: str
) -> None:
    for i in range(30):
        store.append(f"dead-{i}", Message(role=Role.ASSISTANT, content="", tool_calls=[call(i)]))
    store.append("alive", Message(role=Role.USER, content="x"))
    set_expiry(migrated_url, datetime.now(timezone.utc) - timedelta(seconds=1), "id LIKE 'dead-%'")
    assert store.reap_expired(batch_size=7) == 30
    assert store.list() == ["alive"]
    engine = create_engine(migrated_url)
    with engine.connect() as conn:
        for table in ("messages", "tool_calls"):
            count = conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
            assert count == (1 if table == "messages" else 0)
    engine.dispose()
    assert store.reap_expired() == 0


def test_two_reapers_and_live_writers_at_once_delete_exactly_the_expired(
    store: Any, migrated_url: str, store_kind: str
) -> None:
    bulk_sessions(migrated_url, 2000)
    set_expiry(migrated_url, datetime.now(timezone.utc) - timedelta(seconds=5), "id < 's01000'")
    set_expiry(migrated_url, datetime.now(timezone.utc) + timedelta(hours=1), "id >= 's01000'")
    live = [f"s{i:05d}" for i in range(1000, 2000, 10)]
    with spawn_pool(3) as pool:
        reapers = [
            pool.apply_async(workers.reap_all, (migrated_url, store_kind, 50)) for _ in range(2)
        ]
        writer = pool.apply_async(workers.touch_live, (migrated_url, store_kind, live, 3))
        reaped = [r.get(timeout=300) for r in reapers]
        assert writer.get(timeout=300) == len(live) * 3
    assert sum(reaped) == 1000
    remaining = store.list()
    assert sorted(remaining) == [f"s{i:05d}" for i in range(1000, 2000)]


def test_start_reaper_sweeps_in_the_background_until_stopped(store: Any, migrated_url: str) -> None:
    store.append("dead", Message(role=Role.USER, content="x"))
    set_expiry(migrated_url, datetime.now(timezone.utc) - timedelta(seconds=1))
    if hasattr(store, "async_store"):
        import asyncio

        async def run() -> int:
            handle = store.async_store.start_reaper(interval=0.05)
            for _ in range(100):
                if handle.reaped:
                    break
                await asyncio.sleep(0.05)
            await handle.stop()
            assert not handle.running
            return int(handle.reaped)

        reaped = store._loop.run_until_complete(run())
    else:
        import time

        handle = store.start_reaper(interval=0.05)
        for _ in range(100):
            if handle.reaped:
                break
            time.sleep(0.05)
        handle.stop()
        assert not handle.running
        reaped = handle.reaped
    assert reaped == 1
    assert store.list() == []


def test_the_cache_keeps_only_the_most_recently_used_sessions(open_store: Any) -> None:
    store = open_store(cache_size=2)
    for name in ("a", "b", "c"):
        store.get(name)
    with recorded_statements(store.engine) as log:
        store.get("c")
    assert len(log.statements) == 1  # still cached: the one validating lookup
    with recorded_statements(store.engine) as log:
        store.get("a")
    assert len(log.statements) > 1  # evicted: loaded again


def test_a_cache_size_of_zero_disables_the_cache(open_store: Any) -> None:
    store = open_store(cache_size=0)
    store.get("a")
    with recorded_statements(store.engine) as log:
        store.get("a")
    assert len(log.statements) > 1  # the full load, every time


def test_an_append_landing_between_the_reads_of_a_load_is_never_seen_twice(
    open_store: Any, migrated_url: str, db_schema: str | None
) -> None:
    from sqlalchemy import event

    from sqlsessions import Store, StoreConfig

    reader = open_store()
    writer = Store(StoreConfig(url=migrated_url, schema=db_schema))  # sync: runs inside the hook
    writer.append("racy", Message(role=Role.USER, content="first"))
    appended: list[bool] = []

    def append_before_messages_are_read(*args: Any) -> None:
        statement = args[2]
        if not appended and re.search(r"FROM (\w+\.)?messages", statement):
            appended.append(True)
            writer.append("racy", Message(role=Role.USER, content="raced"))

    engine = reader.engine
    event.listen(engine, "before_cursor_execute", append_before_messages_are_read)
    try:
        reader.get("racy")
    finally:
        event.remove(engine, "before_cursor_execute", append_before_messages_are_read)
    assert appended
    writer.append("racy", Message(role=Role.USER, content="after"))
    contents = [m.content for m in reader.get("racy").messages]  # the cache catches up
    writer.close()
    assert contents == ["first", "raced", "after"]
