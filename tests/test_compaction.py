"""store.replace_history / restore_history: compaction that keeps what it replaced."""

from __future__ import annotations

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

CALL = ToolCall(id="c1", function=ToolFunction(name="lookup", arguments='{"n": 1}'))
HISTORY = [
    Message(role=Role.USER, content="find the invoice"),
    Message(role=Role.ASSISTANT, content="", tool_calls=[CALL]),
    Message(role=Role.TOOL, content="invoice 42", tool_call_id="c1"),
    Message(role=Role.ASSISTANT, content="it is invoice 42", model="m", output_tokens=7),
]
SUMMARY = [
    Message(role=Role.SYSTEM, content="Summary: the user asked for an invoice; it is 42."),
    HISTORY[-1],
]


def test_replace_history_swaps_the_messages_and_keeps_the_old_ones_as_a_segment(
    store: Any,
) -> None:
    store.append("s", *HISTORY)
    loaded = store.get("s")
    result = store.replace_history("s", SUMMARY, expected_version=loaded.version)
    assert result.archived_segment == 1
    assert result.version == loaded.version + 1
    assert store.get("s").messages == SUMMARY
    assert store.archived_history("s", 1) == HISTORY
    [segment] = store.archived_segments("s")
    assert (segment.segment, segment.message_count) == (1, 4)


def test_a_stale_expected_version_raises_conflict_and_replaces_nothing(store: Any) -> None:
    store.append("s", *HISTORY)
    stale = store.get("s").version
    store.append("s", Message(role=Role.USER, content="one more"))
    with pytest.raises(ConflictError):
        store.replace_history("s", SUMMARY, expected_version=stale)
    assert len(store.get("s").messages) == 5
    assert store.archived_segments("s") == []


def test_a_session_object_loaded_before_a_replacement_cannot_overwrite_it(store: Any) -> None:
    store.append("s", *HISTORY)
    before = store.get("s")
    store.replace_history("s", SUMMARY)
    before.add_message(Role.USER, "written on the old view")
    with pytest.raises(ConflictError):
        store.save(before)
    assert store.get("s").messages == SUMMARY


def test_positions_continue_after_a_replacement_and_appends_follow(
    store: Any, migrated_url: str
) -> None:
    store.append("s", *HISTORY)
    store.replace_history("s", SUMMARY)
    store.append("s", Message(role=Role.USER, content="next"))
    seqs = query(migrated_url, "SELECT seq FROM messages WHERE session_id = 's' ORDER BY seq")
    assert [seq for (seq,) in seqs] == [5, 6, 7]
    assert [m.content for m in store.get("s").messages][-1] == "next"


def test_restoring_a_segment_brings_it_back_and_archives_what_it_displaces(
    store: Any, migrated_url: str
) -> None:
    store.append("s", *HISTORY)
    store.replace_history("s", SUMMARY)
    result = store.restore_history("s", 1)
    assert result.archived_segment == 2
    assert store.get("s").messages == HISTORY
    assert store.archived_history("s", 2) == SUMMARY
    assert store.archived_history("s", 1) == HISTORY
    seqs = query(migrated_url, "SELECT seq FROM messages WHERE session_id = 's' ORDER BY seq")
    assert [seq for (seq,) in seqs] == [7, 8, 9, 10]
    calls = query(
        migrated_url, "SELECT message_seq, function_name FROM tool_calls WHERE session_id = 's'"
    )
    assert calls == [(8, "lookup")]


def test_replacing_a_missing_session_raises_session_not_found(store: Any) -> None:
    with pytest.raises(SessionNotFoundError):
        store.replace_history("nobody", SUMMARY)
    with pytest.raises(SessionNotFoundError):
        store.restore_history("nobody", 1)
    assert store.list() == []


@pytest.mark.parametrize("segment", [0, 3, "1", True])
def test_restoring_a_segment_that_does_not_exist_is_refused_by_name(
    store: Any, segment: Any
) -> None:
    store.append("s", *HISTORY)
    store.replace_history("s", SUMMARY)
    with pytest.raises(InvalidInputError) as caught:
        store.restore_history("s", segment)
    assert caught.value.field == "segment"
    assert store.get("s").messages == SUMMARY


def test_a_bad_replacement_message_is_refused_by_name_and_changes_nothing(store: Any) -> None:
    store.append("s", *HISTORY)
    with pytest.raises(InvalidInputError) as caught:
        store.replace_history("s", [SUMMARY[0], {"role": "robot", "content": "x"}])
    assert caught.value.field.startswith("messages[1]")
    assert store.get("s").messages == HISTORY


def test_archived_segments_go_when_their_session_is_deleted(store: Any, migrated_url: str) -> None:
    store.append("s", *HISTORY)
    store.replace_history("s", SUMMARY)
    store.delete("s")
    for table in ("archived_messages", "archived_tool_calls"):
        assert query(migrated_url, f"SELECT COUNT(*) FROM {table}") == [(0,)]


def test_compacting_to_nothing_archives_everything_and_leaves_an_empty_session(
    store: Any,
) -> None:
    store.append("s", *HISTORY)
    result = store.replace_history("s", [])
    assert store.get("s").messages == []
    assert store.archived_history("s", result.archived_segment) == HISTORY
