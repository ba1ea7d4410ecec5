"""Migrations under data: sessions written at the first revision survive every upgrade intact,
downgrades to it keep them, and `check` / `sqlsessions db check` report a schema altered by hand."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import create_engine, make_url, text

from fault_workers import run_sql
from sqlsessions import (
    Message,
    Role,
    SchemaNotReadyError,
    Session,
    SessionNotFoundError,
    SqlSessionsError,
    Store,
    StoreConfig,
    ToolCall,
    ToolFunction,
    migrate,
)
from sqlsessions.migrate import check, current, downgrade, head_revision

FIRST = "0001"
UTC = timezone.utc
NOW = datetime.now(UTC).replace(microsecond=123456)
CREATED = datetime(2026, 4, 26, 8, 11, 12, 123456, tzinfo=UTC)


def dialect_of(url: str) -> str:
    return make_url(url).get_backend_name()


def timestamp(url: str, value: datetime | None) -> str | None:
    """A timestamp written the way each dialect stores it (SQLite: naive UTC text)."""
    if value is None:
        return None
    if dialect_of(url) == "sqlite":
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value.isoformat()


def call(call_id: str, name: str, arguments: str) -> ToolCall:
    return ToolCall(id=call_id, function=ToolFunction(name=name, arguments=arguments))


# What the sessions hold, and the rows revision 0001 stores them as (seqs may have gaps:
# `trimmed` lost its first five messages before the upgrade).
EXPECTED: dict[str, dict[str, Any]] = {
    "full": {
        "agent_id": "planner",
        "seqs": [1, 2, 3, 4],
        "last_seq": 4,
        "messages": [
            Message(role=Role.SYSTEM, content="You are helpful."),
            Message(role=Role.USER, content="Flights to Lisbon? \U0001f6eb 'quoted' \\ %s"),
            Message(
                role=Role.ASSISTANT,
                content="",
                tool_calls=[
                    call("call_1", "search_flights", '{"to": "LIS"}'),
                    call("call_2", "weather", "{}"),
                ],
            ),
            Message(role=Role.TOOL, content="3 flights", name="search", tool_call_id="call_1"),
        ],
        "metadata": {
            "channel": "slack",
            "turns": 3,
            "ratio": 0.5,
            "flags": [True, None],
            "nested": {"a": {"b": "c"}},
            "ключ": "值 \U0001f600",
        },
        "expires_at": None,
    },
    "trimmed": {
        "agent_id": "",
        "seqs": [6, 7, 8, 9],
        "last_seq": 9,
        "messages": [
            Message(role=Role.USER, content=f"message {i}")
            if i % 2
            else Message(role=Role.ASSISTANT, content=f"answer {i}")
            for i in range(6, 10)
        ],
        "metadata": {"tier": "gold"},
        "expires_at": NOW + timedelta(days=3),
    },
    "empty": {
        "agent_id": "",
        "seqs": [],
        "last_seq": 0,
        "messages": [],
        "metadata": {},
        "expires_at": NOW + timedelta(days=1),
    },
}
EXPIRED = "expired"


def write_first_revision_rows(url: str, schema: str | None = None) -> None:
    """Raw rows as revision 0001's schema holds them (no models, no store)."""
    q = f"{schema}." if schema else ""
    sessions: list[tuple[str, dict[str, Any], datetime | None]] = [
        (sid, data, data["expires_at"]) for sid, data in EXPECTED.items()
    ]
    expired = {
        "agent_id": "",
        "seqs": [1],
        "last_seq": 1,
        "messages": [Message(role=Role.USER, content="gone")],
        "metadata": {"k": "v"},
    }
    sessions.append((EXPIRED, expired, NOW - timedelta(days=1)))
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for sid, data, expires_at in sessions:
                conn.execute(
                    text(
                        f"INSERT INTO {q}sessions (id, agent_id, created_at, updated_at, "
                        "expires_at, version, rewrite_version, last_seq, message_count) VALUES "
                        "(:id, :agent, :created, :updated, :expires, 3, 2, :last_seq, :count)"
                    ),
                    {
                        "id": sid,
                        "agent": data["agent_id"],
                        "created": timestamp(url, CREATED),
                        "updated": timestamp(url, CREATED + timedelta(minutes=5)),
                        "expires": timestamp(url, expires_at),
                        "last_seq": data["last_seq"],
                        "count": len(data["messages"]),
                    },
                )
                for seq, message in zip(data["seqs"], data["messages"], strict=True):
                    conn.execute(
                        text(
                            f"INSERT INTO {q}messages (session_id, seq, role, content, name, "
                            "tool_call_id, created_at) VALUES "
                            "(:sid, :seq, :role, :content, :name, :call_id, :created)"
                        ),
                        {
                            "sid": sid,
                            "seq": seq,
                            "role": message.role.value,
                            "content": message.content,
                            "name": message.name,
                            "call_id": message.tool_call_id,
                            "created": timestamp(url, CREATED),
                        },
                    )
                    for idx, tool_call in enumerate(message.tool_calls or ()):
                        conn.execute(
                            text(
                                f"INSERT INTO {q}tool_calls (session_id, message_seq, idx, "
                                "call_id, type, function_name, arguments) VALUES "
                                "(:sid, :seq, :idx, :call_id, :type, :name, :arguments)"
                            ),
                            {
                                "sid": sid,
                                "seq": seq,
                                "idx": idx,
                                "call_id": tool_call.id,
                                "type": tool_call.type,
                                "name": tool_call.function.name,
                                "arguments": tool_call.function.arguments,
                            },
                        )
                for key, value in data["metadata"].items():
                    conn.execute(
                        text(
                            f"INSERT INTO {q}session_metadata (session_id, key, value) "
                            "VALUES (:sid, :key, :value)"
                        ),
                        {"sid": sid, "key": key, "value": json.dumps(value)},
                    )
    finally:
        engine.dispose()


def assert_sessions_intact(store: Store) -> None:
    store.clear_cache()
    assert sorted(store.list()) == sorted(EXPECTED)
    for sid, data in EXPECTED.items():
        session = store.get_if_exists(sid)
        assert session.agent_id == data["agent_id"]
        assert session.messages == data["messages"], sid
        assert session.metadata == data["metadata"], sid
        assert session.created_at == CREATED
        assert session.updated_at == CREATED + timedelta(minutes=5)
    with pytest.raises(SessionNotFoundError):
        store.get_if_exists(EXPIRED)
    summaries = {s.id: s.message_count for s in store.list_sessions().sessions}
    assert summaries == {sid: len(data["messages"]) for sid, data in EXPECTED.items()}
    assert [m.content for m in store.history("trimmed", limit=2)] == ["answer 8", "message 9"]


def assert_writable_after_upgrade(url: str, store: Store, schema: str | None = None) -> None:
    """Positions continue after the old last_seq; saves and appends work on old sessions."""
    q = f"{schema}." if schema else ""
    store.append("trimmed", Message(role=Role.USER, content="after the upgrade"))
    session = store.get("full")
    session.add_message(Role.ASSISTANT, "resumed")
    session.set_metadata("upgraded", True)
    store.save(session)
    seqs = [
        row[0]
        for row in run_sql(
            url, f"SELECT seq FROM {q}messages WHERE session_id = 'trimmed' ORDER BY seq"
        )
    ]
    assert seqs == [6, 7, 8, 9, 10]
    store.clear_cache()
    assert store.get_if_exists("full").messages[-1].content == "resumed"
    summary = run_sql(
        url,
        f"SELECT total_messages, tool_call_count FROM {q}session_summary WHERE session_id = 'full'",
    )
    assert [tuple(row) for row in summary] == [(5, 2)]


def test_sessions_written_at_the_first_revision_survive_the_upgrade_to_head(db_url: str) -> None:
    migrate(db_url, FIRST)
    assert current(db_url) == FIRST
    write_first_revision_rows(db_url)
    migrate(db_url)
    assert current(db_url) == head_revision()
    assert check(db_url) == []
    with Store(StoreConfig(url=db_url)) as store:
        assert_sessions_intact(store)
        assert_writable_after_upgrade(db_url, store)


def test_sessions_at_the_first_revision_survive_the_upgrade_in_a_named_schema(
    postgres_url: str,
) -> None:
    migrate(postgres_url, FIRST, schema="agents")
    write_first_revision_rows(postgres_url, schema="agents")
    migrate(postgres_url, schema="agents")
    assert current(postgres_url, schema="agents") == head_revision()
    assert check(postgres_url, schema="agents") == []
    with Store(StoreConfig(url=postgres_url, schema="agents")) as store:
        assert_sessions_intact(store)
        assert_writable_after_upgrade(postgres_url, store, schema="agents")


def test_a_store_on_a_first_revision_database_with_data_upgrades_sqlite_and_refuses_postgres(
    db_url: str,
) -> None:
    migrate(db_url, FIRST)
    write_first_revision_rows(db_url)
    with Store(StoreConfig(url=db_url)) as store:
        if dialect_of(db_url) == "sqlite":  # local development: migrates itself on first use
            assert_sessions_intact(store)
            assert current(db_url) == head_revision()
            return
        with pytest.raises(SchemaNotReadyError, match="sqlsessions db upgrade"):
            store.get_if_exists("full")
    assert current(db_url) == FIRST
    migrate(db_url)
    with Store(StoreConfig(url=db_url)) as store:
        assert_sessions_intact(store)


def conversation_with_everything(sid: str) -> Session:
    session = Session.new(sid, agent_id="agent")
    session.add_message(Role.SYSTEM, "sys")
    session.add_message_with_tool_calls(Role.ASSISTANT, "", [call("c1", "f", '{"x": [1, 2]}')])
    session.add_tool_result("c1", "ok \U0001f600")
    session.set_metadata("m", {"nested": [1, 2.5, None, True, "s"]})
    return session


def test_sessions_written_at_head_survive_a_downgrade_to_the_first_revision_and_back(
    db_url: str,
) -> None:
    migrate(db_url)
    expected = {}
    with Store(StoreConfig(url=db_url, ttl=None)) as store:
        for i in range(5):
            session = conversation_with_everything(f"s{i}")
            store.save(session)
            expected[session.id] = session.model_dump()
    downgrade(db_url, FIRST)
    assert current(db_url) == FIRST
    migrate(db_url)
    assert check(db_url) == []
    with Store(StoreConfig(url=db_url)) as store:
        assert {sid: store.get_if_exists(sid).model_dump() for sid in expected} == expected


# --- drift -------------------------------------------------------------------------------------


@pytest.fixture
def cli() -> Iterator[Any]:
    from typer.testing import CliRunner

    from sqlsessions.cli import app

    runner = CliRunner()

    def run(url: str, *args: str) -> Any:
        return runner.invoke(app, ["--url", url, *args])

    yield run


def alterations(dialect: str) -> list[tuple[str, str]]:
    """(SQL run by hand, the name the drift report must mention), applied in turn."""
    common = [
        ("ALTER TABLE messages ADD COLUMN surprise INTEGER", "surprise"),
        ("DROP INDEX ix_tool_calls_function_name", "ix_tool_calls_function_name"),
    ]
    if dialect == "sqlite":  # SQLite cannot ALTER a column's type; renaming alters it too
        return [
            *common,
            ("ALTER TABLE messages RENAME COLUMN name TO display_name", "display_name"),
        ]
    return [
        *common,
        ("ALTER TABLE messages ALTER COLUMN name TYPE VARCHAR(100)", "name"),
        ("ALTER TABLE sessions ALTER COLUMN agent_id DROP NOT NULL", "agent_id"),
        ("ALTER TABLE tool_calls ALTER COLUMN arguments TYPE VARCHAR(4000)", "arguments"),
    ]


def test_check_reports_each_column_or_index_altered_by_hand_while_data_is_kept(
    db_url: str, cli: Any
) -> None:
    migrate(db_url)
    with Store(StoreConfig(url=db_url)) as store:
        store.save(conversation_with_everything("kept"))
        expected = store.get_if_exists("kept").model_dump()
    assert check(db_url) == []
    assert cli(db_url, "db", "check").exit_code == 0

    seen: list[str] = []
    for statement, name in alterations(dialect_of(db_url)):
        run_sql(db_url, statement)
        problems = check(db_url)
        assert len(problems) > len(seen), statement
        assert any(name in problem for problem in problems), (statement, problems)
        seen = problems
        result = cli(db_url, "db", "check")
        assert result.exit_code == 1, result.output
        assert name in result.output + result.stderr

    if dialect_of(db_url) == "sqlite":  # the store reads `name`: put it back to read the data
        run_sql(db_url, "ALTER TABLE messages RENAME COLUMN display_name TO name")
    with Store(StoreConfig(url=db_url, auto_migrate=False)) as store:
        assert store.get_if_exists("kept").model_dump() == expected


# --- 0005: lossless items ------------------------------------------------------------------------

BEFORE_ITEMS = "0004"


def test_messages_written_before_items_existed_become_chat_messages_and_items_survive_downgrade(
    db_url: str,
) -> None:
    migrate(db_url, BEFORE_ITEMS)
    write_first_revision_rows(db_url)
    migrate(db_url)
    assert check(db_url) == []
    reasoning = {"type": "reasoning", "id": "rs_1", "encrypted_content": "gAAA", "x": [1.0, 2]}
    with Store(StoreConfig(url=db_url)) as store:
        assert_sessions_intact(store)
        assert all(m.kind == "message" and m.item is None for m in store.get("full").messages)
        store.append(
            "full",
            Message(role=Role.ASSISTANT, kind="reasoning", item_format="f", item=reasoning),
        )
        store.clear_cache()
        assert store.get("full").messages[-1].item == reasoning
    counts = run_sql(db_url, "SELECT total_messages FROM session_summary WHERE session_id = 'full'")
    assert [tuple(row) for row in counts] == [(4,)]  # the reasoning item is not a message

    downgrade(db_url, BEFORE_ITEMS)
    assert current(db_url) == BEFORE_ITEMS
    counts = run_sql(db_url, "SELECT total_messages FROM session_summary WHERE session_id = 'full'")
    assert [tuple(row) for row in counts] == [(5,)]  # every row kept, now read as a message
    migrate(db_url)
    assert check(db_url) == []
    with Store(StoreConfig(url=db_url)) as store:
        messages = store.get_if_exists("full").messages
        assert messages[:4] == EXPECTED["full"]["messages"]
        assert (messages[4].role, messages[4].kind, messages[4].item) == (
            Role.ASSISTANT,
            "message",
            None,
        )


# --- 0007: session owners ------------------------------------------------------------------------

BEFORE_OWNERS = "0006"


def test_sessions_written_before_owners_existed_belong_to_the_default_owner(db_url: str) -> None:
    migrate(db_url, BEFORE_OWNERS)
    write_first_revision_rows(db_url)
    migrate(db_url)
    assert check(db_url) == []
    owners = run_sql(db_url, "SELECT DISTINCT owner FROM messages UNION SELECT owner FROM sessions")
    assert [tuple(row) for row in owners] == [("",)]
    with Store(StoreConfig(url=db_url)) as store:
        assert_sessions_intact(store)
        assert store.get_if_exists("full").owner == ""
        assert_writable_after_upgrade(db_url, store)
        # The same id is free in another owner, and writing there leaves the old one alone.
        store.scoped("alice").append("full", Message(role=Role.USER, content="alice's Lisbon"))
        assert [m.content for m in store.get_if_exists("full").messages][-1] == "resumed"
        # The search index still points at the right rows (SQLite rebuilt the tables).
        assert [h.session_id for h in store.search("Lisbon").hits] == ["full"]
        assert [h.snippet for h in store.scoped("alice").search("Lisbon").hits] == [
            "alice's <mark>Lisbon</mark>"
        ]


def test_a_downgrade_below_owners_refuses_while_a_session_has_an_owner_and_keeps_everything(
    db_url: str,
) -> None:
    migrate(db_url)
    with Store(StoreConfig(url=db_url, ttl=None)) as store:
        store.save(conversation_with_everything("s"))
        owned = conversation_with_everything("s")
        owned.owner = "alice"
        store.scoped("alice").save(owned)
        expected = store.get_if_exists("s").model_dump()
    with pytest.raises(SqlSessionsError, match="owner other than ''"):
        downgrade(db_url, BEFORE_OWNERS)
    assert current(db_url) == head_revision()
    assert check(db_url) == []
    with Store(StoreConfig(url=db_url, ttl=None)) as store:
        assert store.scoped("alice").get_if_exists("s").owner == "alice"
        store.scoped("alice").delete("s")
    downgrade(db_url, BEFORE_OWNERS)
    assert current(db_url) == BEFORE_OWNERS
    summary = run_sql(db_url, "SELECT total_messages FROM session_summary WHERE session_id = 's'")
    assert [tuple(row) for row in summary] == [(3,)]
    migrate(db_url)
    assert check(db_url) == []
    with Store(StoreConfig(url=db_url)) as store:
        assert store.get_if_exists("s").model_dump() == expected
        assert [h.session_id for h in store.search("sys").hits] == ["s"]
