"""The Go package's Store API: behaviour on Store and AsyncStore, SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.dialects import sqlite

from sqlsessions import (
    ConflictError,
    InvalidInputError,
    Message,
    Role,
    Session,
    SessionNotFoundError,
    Store,
    StoreConfig,
    ToolCall,
    ToolFunction,
)
from store_fixtures import recorded_statements

GO_DOCUMENT = (
    '{"id":"go-1","agent_id":"planner","messages":['
    '{"role":"system","content":"You are helpful."},'
    '{"role":"user","content":"Find flights to Lisbon"},'
    '{"role":"assistant","content":"","tool_calls":[{"id":"call_1","type":"function",'
    '"function":{"name":"search_flights","arguments":"{\\"to\\":\\"LIS\\"}"}},'
    '{"id":"call_2","type":"function","function":{"name":"weather","arguments":"{}"}}]},'
    '{"role":"tool","content":"3 flights","tool_call_id":"call_1"},'
    '{"role":"tool","content":"sunny","name":"weather","tool_call_id":"call_2"},'
    '{"role":"assistant","content":"Found 3 flights; it is sunny."}],'
    '"created_at":"2026-04-26T10:11:12.123456789+02:00",'
    '"updated_at":"2026-04-26T08:11:13.5Z",'
    '"metadata":{"channel":"slack","turns":3,"ratio":0.5,"flags":[true,null],'
    '"nested":{"a":{"b":"c"}}}}'
)


def count_rows(url: str, table: str, session_id: str | None = None) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            sql = f"SELECT COUNT(*) FROM {table}"
            if session_id is None:
                return int(conn.execute(text(sql)).scalar_one())
            column = "id" if table == "sessions" else "session_id"
            return int(
                conn.execute(text(f"{sql} WHERE {column} = :id"), {"id": session_id}).scalar_one()
            )
    finally:
        engine.dispose()


def conversation(n: int) -> list[Message]:
    """`n` messages, a tool call on every fourth one."""
    result = []
    for i in range(n):
        if i % 4 == 2:
            call = ToolCall(
                id=f"c{i}", function=ToolFunction(name="lookup", arguments=f'{{"i":{i}}}')
            )
            result.append(Message(role=Role.ASSISTANT, content="", tool_calls=[call]))
        elif i % 4 == 3:
            result.append(Message(role=Role.TOOL, content=f"result {i}", tool_call_id=f"c{i - 1}"))
        else:
            result.append(Message(role=Role.USER, content=f"message {i}"))
    return result


# --- get / get_if_exists -------------------------------------------------------------------


def test_get_creates_and_persists_an_empty_session(store: Any, open_store: Any) -> None:
    session = store.get("chat-1")
    assert session.id == "chat-1"
    assert session.messages == []
    assert session.metadata == {}
    assert session.created_at.tzinfo is not None
    other = open_store()
    assert other.get_if_exists("chat-1").id == "chat-1"
    assert other.list() == ["chat-1"]


def test_get_if_exists_raises_session_not_found_for_an_unknown_id(store: Any) -> None:
    with pytest.raises(SessionNotFoundError, match="session not found") as caught:
        store.get_if_exists("nope")
    assert caught.value.session_id == "nope"
    assert store.list() == []


def test_saved_conversation_reads_back_identically_through_another_store(
    store: Any, open_store: Any
) -> None:
    session = store.get("chat-1")
    session.agent_id = "planner"
    session.add_message(Role.USER, "hi")
    session.add_message_with_tool_calls(
        Role.ASSISTANT,
        "",
        [ToolCall(id="c1", function=ToolFunction(name="search", arguments='{"q": "x"}'))],
    )
    session.add_tool_result("c1", "3 results")
    session.set_metadata("channel", "slack")
    session.set_metadata("nested", {"a": [1, 2.5, None, True], "b": {"c": "d"}})
    store.save(session)

    loaded = open_store().get_if_exists("chat-1")
    assert loaded.agent_id == "planner"
    assert loaded.messages == session.messages
    assert loaded.metadata == session.metadata
    assert loaded.created_at == session.created_at
    assert loaded.updated_at == session.updated_at
    assert loaded.get_metadata("channel") == ("slack", True)
    assert loaded.get_metadata("missing") == (None, False)


def test_go_document_round_trips_through_save_and_load(store: Any, open_store: Any) -> None:
    session = Session.from_json(GO_DOCUMENT)
    store.save(session)
    loaded = open_store().get_if_exists("go-1")
    assert json.loads(loaded.to_json()) == json.loads(Session.from_json(GO_DOCUMENT).to_json())
    original = json.loads(GO_DOCUMENT)
    written = json.loads(loaded.to_json())
    assert written["messages"] == original["messages"]
    assert written["metadata"] == original["metadata"]
    assert written["agent_id"] == original["agent_id"]
    # Go writes nanoseconds and local offsets; we keep the same instant to the microsecond, in UTC.
    assert written["created_at"] == "2026-04-26T08:11:12.123456Z"
    assert written["updated_at"] == "2026-04-26T08:11:13.5Z"


def test_metadata_values_keep_their_json_types(store: Any, open_store: Any) -> None:
    session = store.get("types")
    values: dict[str, Any] = {
        "int": 1,
        "float": 1.5,
        "whole_float": 2.0,
        "true": True,
        "null": None,
        "text": "1",
        "list": [1, "a", None],
        "object": {"k": {"deep": [False]}},
    }
    for key, value in values.items():
        session.set_metadata(key, value)
    store.save(session)
    loaded = open_store().get_if_exists("types")
    assert loaded.metadata == values
    assert type(loaded.metadata["true"]) is bool
    assert type(loaded.metadata["int"]) is int


# --- save: incremental writes ---------------------------------------------------------------


def test_save_after_appending_one_message_writes_one_message_row_and_one_session_update(
    store: Any,
) -> None:
    session = store.get("long")
    session.messages.extend(conversation(1000))
    store.save(session)
    session.add_message(Role.USER, "one more")

    with recorded_statements(store.engine) as log:
        store.save(session)

    message_inserts = log.matching("INSERT", "messages")
    assert [rows for _, rows in message_inserts] == [1]
    assert len(log.matching("UPDATE", "sessions")) == 1
    assert log.matching("DELETE") == []
    assert log.matching("INSERT", "tool_calls") == []
    assert log.matching("INSERT", "session_metadata") == []
    assert sum(rows for _, rows in log.entries) == 2


def test_save_of_an_appended_tool_call_writes_only_its_message_and_call_rows(store: Any) -> None:
    session = store.get("calls")
    session.messages.extend(conversation(100))
    store.save(session)
    calls = [
        ToolCall(id=f"n{i}", function=ToolFunction(name="f", arguments="{}")) for i in range(3)
    ]
    session.add_message_with_tool_calls(Role.ASSISTANT, "", calls)

    with recorded_statements(store.engine) as log:
        store.save(session)

    assert [rows for _, rows in log.matching("INSERT", "messages")] == [1]
    assert [rows for _, rows in log.matching("INSERT", "tool_calls")] == [3]
    assert log.matching("DELETE") == []


def test_save_after_trim_deletes_only_dropped_rows(
    store: Any, open_store: Any, migrated_url: str
) -> None:
    session = store.get("trimmed")
    session.messages.extend(conversation(40))
    store.save(session)
    kept = session.messages[-10:]
    session.trim(10)

    with recorded_statements(store.engine) as log:
        store.save(session)

    deletes = log.matching("DELETE", "messages")
    assert len(deletes) == 1
    assert log.matching("INSERT") == []
    assert count_rows(migrated_url, "messages", "trimmed") == 10
    assert open_store().get_if_exists("trimmed").messages == kept


def test_trim_then_append_keeps_positions_increasing_and_never_reused(
    store: Any, open_store: Any, migrated_url: str
) -> None:
    session = store.get("seqs")
    session.messages.extend(conversation(8))
    store.save(session)
    session.trim(3)
    session.add_message(Role.USER, "after trim")
    store.save(session)

    engine = create_engine(migrated_url)
    with engine.connect() as conn:
        seqs = (
            conn.execute(text("SELECT seq FROM messages WHERE session_id = 'seqs' ORDER BY seq"))
            .scalars()
            .all()
        )
    engine.dispose()
    assert seqs == [6, 7, 8, 9]
    loaded = open_store().get_if_exists("seqs")
    assert [m.content for m in loaded.messages][-1] == "after trim"
    assert len(loaded.messages) == 4


def test_clear_then_save_removes_every_message_row(store: Any, migrated_url: str) -> None:
    session = store.get("cleared")
    session.messages.extend(conversation(12))
    store.save(session)
    session.clear()
    store.save(session)
    assert count_rows(migrated_url, "messages", "cleared") == 0
    assert count_rows(migrated_url, "tool_calls", "cleared") == 0
    store.clear_cache()
    assert store.get_if_exists("cleared").messages == []


def test_editing_an_earlier_message_is_persisted(store: Any, open_store: Any) -> None:
    session = store.get("edited")
    session.messages.extend(conversation(10))
    store.save(session)
    session.messages[1] = session.messages[1].replace(content="edited")
    store.save(session)
    loaded = open_store().get_if_exists("edited")
    assert loaded.messages == session.messages
    assert loaded.messages[1].content == "edited"


def test_metadata_changes_and_removals_are_persisted(store: Any, open_store: Any) -> None:
    session = store.get("meta")
    session.set_metadata("a", 1)
    session.set_metadata("b", {"x": 1})
    store.save(session)
    session.set_metadata("a", True)  # 1 == True in Python, but not in JSON
    session.metadata["b"]["x"] = 2  # nested in-place change
    session.set_metadata("c", "new")
    store.save(session)
    del session.metadata["c"]
    store.save(session)
    loaded = open_store().get_if_exists("meta")
    assert loaded.metadata == {"a": True, "b": {"x": 2}}
    assert loaded.metadata["a"] is True


def test_every_save_bumps_the_stored_version(store: Any, migrated_url: str) -> None:
    session = store.get("versions")
    versions = []
    for i in range(3):
        session.add_message(Role.USER, str(i))
        store.save(session)
        engine = create_engine(migrated_url)
        with engine.connect() as conn:
            versions.append(
                conn.execute(
                    text("SELECT version FROM sessions WHERE id = 'versions'")
                ).scalar_one()
            )
        engine.dispose()
    assert versions == sorted(versions)
    assert len(set(versions)) == 3


def test_saving_a_new_session_object_creates_it(store: Any, open_store: Any) -> None:
    session = Session.new("fresh", agent_id="a1")
    session.add_message(Role.USER, "hello")
    store.save(session)
    session.add_message(Role.ASSISTANT, "hi")
    store.save(session)  # the object now tracks what it stored
    assert open_store().get_if_exists("fresh").messages == session.messages


def test_saving_a_new_object_over_an_existing_session_conflicts_and_writes_nothing(
    store: Any, open_store: Any
) -> None:
    existing = store.get("taken")
    existing.add_message(Role.USER, "keep me")
    store.save(existing)
    intruder = Session.new("taken")
    intruder.add_message(Role.USER, "overwrite")
    with pytest.raises(ConflictError, match="already exists"):
        store.save(intruder)
    assert [m.content for m in open_store().get_if_exists("taken").messages] == ["keep me"]


def test_a_stale_save_raises_conflict_and_writes_nothing(store: Any, open_store: Any) -> None:
    first = store.get("race")
    other_store = open_store()
    second = other_store.get("race")
    first.add_message(Role.USER, "first")
    store.save(first)
    second.add_message(Role.USER, "second")
    with pytest.raises(ConflictError, match=r"Load it again"):
        other_store.save(second)
    assert [m.content for m in open_store().get_if_exists("race").messages] == ["first"]


def test_save_rejects_a_non_message_in_the_list_and_leaves_storage_untouched(
    store: Any, open_store: Any
) -> None:
    session = store.get("bad")
    session.add_message(Role.USER, "ok")
    store.save(session)
    session.messages.append({"role": "user", "content": "dict"})
    with pytest.raises(InvalidInputError, match=r"messages\[1\]"):
        store.save(session)
    assert [m.content for m in open_store().get_if_exists("bad").messages] == ["ok"]


def test_save_rejects_non_json_metadata_naming_the_key(store: Any, open_store: Any) -> None:
    session = store.get("badmeta")
    session.metadata["when"] = datetime.now(timezone.utc)
    with pytest.raises(InvalidInputError, match=r"metadata\[when\]"):
        store.save(session)
    assert open_store().get_if_exists("badmeta").metadata == {}


def test_a_save_refuses_a_nested_key_that_is_not_a_string_though_its_json_text_is_unchanged(
    store: Any, open_store: Any
) -> None:
    session = store.get("intkey")
    session.set_metadata("user", {"1": "x"})
    store.save(session)
    session.metadata["user"] = {1: "x"}  # JSON writes it as {"1": "x"}: the stored text
    with pytest.raises(InvalidInputError, match=r"metadata\[user\]"):
        store.save(session)
    assert open_store().get_if_exists("intkey").metadata == {"user": {"1": "x"}}


def test_a_metadata_value_changed_to_an_equal_number_of_another_type_is_saved(
    store: Any, open_store: Any
) -> None:
    session = store.get("numbers")
    session.metadata.update({"ratio": 1, "flag": 0, "items": [1, 2]})
    store.save(session)
    session.metadata.update({"ratio": 1.0, "flag": False, "items": (1, 2)})  # == in Python
    store.save(session)
    loaded = open_store().get_if_exists("numbers").metadata
    assert loaded == {"ratio": 1.0, "flag": False, "items": [1, 2]}
    assert type(loaded["ratio"]) is float and loaded["flag"] is False


def test_sqlite_keeps_timestamps_as_the_text_sqlalchemys_datetime_writes(sqlite_url: str) -> None:
    # Databases written by earlier versions, and SQL comparing these columns as text, rely
    # on one format: "YYYY-MM-DD HH:MM:SS.ffffff", UTC, microseconds always present.
    with Store(StoreConfig(url=sqlite_url)) as store:
        session = store.get("stamps")
        session.created_at = datetime(999, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
        session.add_message(Role.USER, "hi")
        store.save(session)
        store.append("stamps", Message(role=Role.ASSISTANT, content="hello"))
        loaded = store.get_if_exists("stamps")
    engine = create_engine(sqlite_url)
    with engine.connect() as conn:
        head = conn.execute(text("SELECT created_at, updated_at, expires_at FROM sessions")).one()
        stamps = conn.execute(text("SELECT created_at FROM messages ORDER BY seq")).scalars()
        written = [*head, *stamps]
    engine.dispose()
    as_sqlalchemy_writes = sqlite.DATETIME().bind_processor(sqlite.dialect())
    assert head.created_at == "0999-01-02 01:04:05.000000"
    assert head.updated_at == as_sqlalchemy_writes(loaded.updated_at.replace(tzinfo=None))
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", t) for t in written)
    assert loaded.created_at == datetime(999, 1, 2, 1, 4, 5, tzinfo=timezone.utc)


# --- delete / list / touch / cache -----------------------------------------------------------


def test_delete_removes_the_session_with_all_its_rows(store: Any, migrated_url: str) -> None:
    session = store.get("gone")
    session.messages.extend(conversation(8))
    session.set_metadata("k", "v")
    store.save(session)
    store.delete("gone")
    for table in ("sessions", "messages", "tool_calls", "session_metadata"):
        assert count_rows(migrated_url, table) == 0, table
    with pytest.raises(SessionNotFoundError):
        store.get_if_exists("gone")


def test_deleting_a_missing_session_is_not_an_error(store: Any) -> None:
    store.delete("never-existed")
    assert store.list() == []


def test_list_returns_every_session_id(store: Any) -> None:
    for session_id in ("b", "a", "c"):
        store.get(session_id)
    assert sorted(store.list()) == ["a", "b", "c"]


def test_touch_of_a_missing_session_raises_not_found(store: Any) -> None:
    with pytest.raises(SessionNotFoundError):
        store.touch("missing")


def test_touch_restarts_the_ttl_without_changing_content(
    open_store: Any, migrated_url: str
) -> None:
    store = open_store(ttl=timedelta(hours=1))
    session = store.get("t")
    session.add_message(Role.USER, "hi")
    store.save(session)

    def stored() -> tuple[Any, ...]:
        engine = create_engine(migrated_url)
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT version, updated_at, expires_at FROM sessions WHERE id = 't'")
            ).one()
        engine.dispose()
        return tuple(row)

    before = stored()
    with recorded_statements(store.engine) as log:
        store.touch("t")
    after = stored()
    assert after[:2] == before[:2]
    assert after[2] != before[2]
    assert [sql.split()[0].upper() for sql in log.statements] == ["UPDATE"]
    assert store.get_if_exists("t").messages[0].content == "hi"


def test_clear_cache_keeps_storage(store: Any) -> None:
    session = store.get("kept")
    session.add_message(Role.USER, "hi")
    store.save(session)
    store.clear_cache()
    assert store.get_if_exists("kept").messages[0].content == "hi"


def test_get_messages_returns_a_copy_that_does_not_touch_the_stored_session(store: Any) -> None:
    session = store.get("copy")
    session.add_message(Role.USER, "hi")
    store.save(session)
    copied = session.get_messages()
    copied.append(Message(role=Role.USER, content="not saved"))
    store.save(session)
    store.clear_cache()
    assert len(store.get_if_exists("copy").messages) == 1


def test_store_is_a_context_manager_that_closes(open_store: Any) -> None:
    with open_store() as store:
        store.get("ctx")
    assert "ctx" in open_store().list()


def test_invalid_session_ids_are_rejected_naming_the_field(store: Any) -> None:
    for bad in ("", "x" * 256, "nul\x00id"):
        with pytest.raises(InvalidInputError, match="session_id"):
            store.get(bad)
    with pytest.raises(InvalidInputError, match="session_id"):
        store.get(42)
    assert store.list() == []


# --- TTL -------------------------------------------------------------------------------------


def expire_now(url: str, session_id: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE sessions SET expires_at = :t WHERE id = :id"),
            {"t": datetime.now(timezone.utc) - timedelta(seconds=1), "id": session_id},
        )
    engine.dispose()


def test_expired_session_is_invisible_to_every_read(store: Any, migrated_url: str) -> None:
    session = store.get("old")
    session.add_message(Role.USER, "stale")
    store.save(session)
    store.get("live")
    expire_now(migrated_url, "old")
    assert store.list() == ["live"]
    with pytest.raises(SessionNotFoundError):
        store.get_if_exists("old")
    with pytest.raises(SessionNotFoundError):
        store.touch("old")
    fresh = store.get("old")
    assert fresh.messages == []
    assert count_rows(migrated_url, "messages", "old") == 0


def test_saving_a_session_that_expired_since_it_was_loaded_conflicts(
    store: Any, migrated_url: str
) -> None:
    session = store.get("expiring")
    expire_now(migrated_url, "expiring")
    session.add_message(Role.USER, "late")
    with pytest.raises(ConflictError):
        store.save(session)


def test_save_restarts_the_ttl(open_store: Any, migrated_url: str) -> None:
    store = open_store(ttl=timedelta(minutes=5))
    before = datetime.now(timezone.utc)
    session = store.get("ttl")
    session.add_message(Role.USER, "x")
    store.save(session)
    engine = create_engine(migrated_url)
    with engine.connect() as conn:
        raw = conn.execute(text("SELECT expires_at FROM sessions WHERE id = 'ttl'")).scalar_one()
    engine.dispose()
    expires = raw if isinstance(raw, datetime) else datetime.fromisoformat(raw)
    expires = expires if expires.tzinfo else expires.replace(tzinfo=timezone.utc)
    assert (
        before + timedelta(minutes=4) < expires <= datetime.now(timezone.utc) + timedelta(minutes=5)
    )


def test_ttl_none_means_the_session_never_expires(open_store: Any, migrated_url: str) -> None:
    store = open_store(ttl=None)
    store.get("forever")
    assert count_rows(migrated_url, "sessions") == 1
    engine = create_engine(migrated_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT expires_at FROM sessions")).scalar_one() is None
    engine.dispose()


def test_schema_option_puts_every_table_in_that_schema(postgres_url: str) -> None:
    from sqlalchemy import inspect

    from sqlsessions import Store, StoreConfig, migrate

    migrate(postgres_url, schema="agents")
    with Store(StoreConfig(url=postgres_url, schema="agents")) as store:
        session = store.get("placed")
        session.add_message(Role.USER, "hi")
        store.save(session)
        assert store.get_if_exists("placed").messages[0].content == "hi"
    engine = create_engine(postgres_url)
    inspector = inspect(engine)
    assert set(inspector.get_table_names(schema="agents")) >= {
        "sessions",
        "messages",
        "tool_calls",
        "session_metadata",
        "sqlsessions_alembic_version",
    }
    assert inspector.get_table_names(schema="public") == []
    engine.dispose()


@pytest.mark.parametrize(
    "change",
    [
        "del messages[2]",
        "messages.insert(1, extra)",
        "messages.pop(0)",
        "messages.remove(messages[3])",
        "messages.reverse()",
        "messages[1:3] = [extra]",
        "messages.append(extra)",
        "messages += [extra, extra]",
        "session.messages = [extra, *messages]",
    ],
)
def test_any_in_place_change_of_the_message_list_is_persisted(
    change: str, store: Any, open_store: Any
) -> None:
    session = store.get("edits")
    session.messages.extend(conversation(8))
    store.save(session)
    messages = session.messages
    extra = Message(role=Role.USER, content="extra")
    exec(change, {"messages": messages, "extra": extra, "session": session})
    expected = list(session.messages)
    store.save(session)
    assert open_store().get_if_exists("edits").messages == expected
    session.add_message(Role.USER, "then appended")
    store.save(session)
    assert open_store().get_if_exists("edits").messages == [*expected, session.messages[-1]]


def test_a_save_failing_midway_rolls_back_and_leaves_the_previous_version(
    store: Any, open_store: Any, migrated_url: str
) -> None:
    from sqlsessions import StorageError

    session = store.get("atomic")
    session.add_message(Role.USER, "kept")
    store.save(session)
    engine = create_engine(migrated_url)
    with engine.connect() as conn:
        before = conn.execute(text("SELECT version FROM sessions WHERE id = 'atomic'")).scalar()
    # Bypasses validation, so the database's NOT NULL fails after the session row update.
    session.messages.append(Message.model_construct(role=Role.USER, content=None))
    with pytest.raises(StorageError) as caught:
        store.save(session)
    assert caught.value.__cause__ is not None
    with engine.connect() as conn:
        after = conn.execute(text("SELECT version FROM sessions WHERE id = 'atomic'")).scalar()
    engine.dispose()
    assert after == before
    assert [m.content for m in open_store().get_if_exists("atomic").messages] == ["kept"]
