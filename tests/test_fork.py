"""store.fork: a server-side copy of a session (up to a position) with its lineage."""

from __future__ import annotations

import time
from typing import Any

import pytest

from raw_sql import query
from sqlsessions import (
    ConflictError,
    InvalidInputError,
    Message,
    Role,
    SessionNotFoundError,
    ToolCall,
    ToolFunction,
)
from store_fixtures import StoreOpener, recorded_statements


def conversation(store: Any, session_id: str) -> None:
    session = store.get(session_id)
    session.agent_id = "support"
    session.add_message(Role.USER, "find the invoice")
    session.add_message_with_tool_calls(
        Role.ASSISTANT,
        "",
        [ToolCall(id="c1", function=ToolFunction(name="lookup", arguments='{"n": 1}'))],
    )
    session.add_tool_result("c1", "invoice 42")
    session.add_message(Role.ASSISTANT, "it is invoice 42")
    session.set_metadata("channel", "slack")
    store.save(session)


def lineage(url: str, session_id: str) -> tuple[Any, ...]:
    rows = query(url, "SELECT parent_id, forked_at_seq FROM sessions WHERE id = :id", id=session_id)
    return rows[0]


def test_a_fork_holds_the_whole_conversation_with_tool_calls_and_metadata(
    store: Any, migrated_url: str
) -> None:
    conversation(store, "parent")
    assert store.fork("parent", "child") == 4
    parent, child = store.get("parent"), store.get("child")
    assert child.messages == parent.messages
    assert child.messages[1].tool_calls == parent.messages[1].tool_calls
    assert child.metadata == {"channel": "slack"}
    assert child.agent_id == "support"
    assert lineage(migrated_url, "child") == ("parent", 4)
    assert lineage(migrated_url, "parent") == (None, None)


def test_a_fork_at_a_position_stops_there_and_both_sessions_go_their_own_way(
    store: Any, migrated_url: str
) -> None:
    conversation(store, "parent")
    assert store.fork("parent", "child", at_seq=2) == 2
    child = store.get("child")
    assert [m.content for m in child.messages] == ["find the invoice", ""]
    assert lineage(migrated_url, "child") == ("parent", 2)
    store.append("child", Message(role=Role.TOOL, content="other result", tool_call_id="c1"))
    store.append("parent", Message(role=Role.USER, content="thanks"))
    assert [m.content for m in store.get("child").messages][-1] == "other result"
    assert len(store.get("parent").messages) == 5
    assert len(store.get("child").messages) == 3


def test_forking_a_missing_session_raises_session_not_found_and_creates_nothing(
    store: Any,
) -> None:
    with pytest.raises(SessionNotFoundError):
        store.fork("nobody", "child")
    assert store.list() == []


def test_forking_onto_an_existing_session_raises_conflict_and_changes_nothing(
    store: Any, migrated_url: str
) -> None:
    conversation(store, "parent")
    store.append("taken", Message(role=Role.USER, content="mine"))
    with pytest.raises(ConflictError):
        store.fork("parent", "taken")
    assert [m.content for m in store.get("taken").messages] == ["mine"]
    assert lineage(migrated_url, "taken") == (None, None)


@pytest.mark.parametrize("at_seq", [-1, 5, "2", True])
def test_a_bad_fork_position_is_refused_by_name(store: Any, at_seq: Any) -> None:
    conversation(store, "parent")
    with pytest.raises(InvalidInputError) as caught:
        store.fork("parent", "child", at_seq=at_seq)
    assert caught.value.field == "at_seq"
    assert sorted(store.list()) == ["parent"]


def test_a_fork_of_an_expired_session_is_refused(open_store: StoreOpener) -> None:
    store = open_store(ttl=0.001)
    store.append("parent", Message(role=Role.USER, content="hi"))
    time.sleep(0.01)
    with pytest.raises(SessionNotFoundError):
        store.fork("parent", "child")


def test_forking_ten_thousand_messages_takes_as_many_statements_as_forking_ten(
    store: Any,
) -> None:
    for session_id, size in (("small", 10), ("large", 10_000)):
        store.append(
            session_id,
            *(
                Message(role=Role.USER if i % 2 else Role.ASSISTANT, content=f"message {i}")
                for i in range(size)
            ),
        )
    counts = []
    for source in ("small", "large"):
        with recorded_statements(store.engine) as log:
            copied = store.fork(source, f"{source}-copy")
        counts.append(len(log.statements))
        assert copied == len(store.get(source).messages)
    assert counts[0] == counts[1] <= 8
    assert store.get("large-copy").messages == store.get("large").messages
