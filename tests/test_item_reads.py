"""`store.last_items`: the read path of the framework adapters (each row written in the
adapter's format comes back as its item, every other row as a `Message`), through Store and
AsyncStore on every database variant."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from raw_sql import execute
from sqlsessions import InvalidInputError, Message, Role, ToolCall, ToolFunction

FORMAT = "openai-agents"
TRICKY = {
    "type": "reasoning",
    "id": "rs_1",
    "encrypted_content": "gAAA\u00e9\U0001f6eb==",
    "numbers": [1, 1.0, 0.1, 1e-7, 2**70, 1e16, -2.5e300, 5e-324, None, True, False, ""],
    "text": 'quotes " and \\ backslash, a comma, ] a bracket, \n a newline',
    "nested": {"z": {"y": []}, "a": {}},
}


def as_json(value: Any) -> str:
    """JSON text with sorted keys: equal text means JSON-equal, number types included."""
    return json.dumps(value, sort_keys=True)


def item_message(item: dict[str, Any], item_format: str = FORMAT) -> Message:
    return Message(role=Role.ASSISTANT, kind="reasoning", item=item, item_format=item_format)


def go_tool_call() -> Message:
    calls = [
        ToolCall(id="c1", function=ToolFunction(name="f", arguments='{"a": 1}')),
        ToolCall(id="c2", function=ToolFunction(name="g", arguments="{}")),
    ]
    return Message(role=Role.ASSISTANT, content="", tool_calls=calls)


def test_items_written_in_the_format_come_back_json_equal_oldest_first(store: Any) -> None:
    items = [{"type": "message", "role": "user", "content": f"m{i}"} for i in range(5)]
    store.append("s", *(item_message(item) for item in items), item_message(TRICKY))
    read = store.last_items("s", FORMAT)
    assert [as_json(entry) for entry in read] == [as_json(item) for item in [*items, TRICKY]]
    numbers = read[-1]["numbers"]
    assert isinstance(numbers[1], float) and isinstance(numbers[5], float)
    assert numbers[4] == 2**70 and isinstance(numbers[4], int)
    assert [entry["content"] for entry in store.last_items("s", FORMAT, 3)[:2]] == ["m3", "m4"]


def test_rows_written_otherwise_come_back_as_messages_with_their_tool_calls(store: Any) -> None:
    other_format = item_message({"type": "human", "data": {"content": "x"}}, "langchain")
    written = [
        item_message({"type": "message", "role": "user", "content": "hi"}),
        go_tool_call(),
        Message(role=Role.TOOL, content="done", tool_call_id="c1"),
        other_format,
        item_message(TRICKY),
    ]
    store.append("s", *written[:2])
    store.append("s", *written[2:])
    read = store.last_items("s", FORMAT)
    assert as_json(read[0]) == as_json(written[0].item)
    assert read[1:4] == written[1:4]  # Messages, tool calls in order, the other item kept
    assert as_json(read[4]) == as_json(TRICKY)
    assert store.last_items("s", FORMAT, 4)[0] == written[1]
    assert store.last_items("s", FORMAT, 2) == [other_format, read[4]]


def test_a_row_of_the_format_without_an_item_comes_back_as_none(store: Any) -> None:
    # How the ADK adapter stores an event across several rows: the first carries the item.
    continuation = Message(role=Role.TOOL, content="{}", tool_call_id="c1", item_format=FORMAT)
    store.append("s", item_message({"i": 1}), continuation, item_message({"i": 2}))
    assert store.last_items("s", FORMAT) == [{"i": 1}, None, {"i": 2}]
    store.append("s", Message(role=Role.USER, content="go api"))  # forces the whole-row read
    assert store.last_items("s", FORMAT)[:3] == [{"i": 1}, None, {"i": 2}]


def test_the_limit_is_exact_and_every_message_counts_once(store: Any) -> None:
    store.append("s", *(item_message({"i": i}) for i in range(7)), go_tool_call())
    assert [entry["i"] for entry in store.last_items("s", FORMAT, 3)[:2]] == [5, 6]
    assert len(store.last_items("s", FORMAT, 3)) == 3
    assert len(store.last_items("s", FORMAT, 100)) == 8
    assert len(store.last_items("s", FORMAT)) == 8
    assert len(store.last_items("s", FORMAT, 2**63 - 1)) == 8  # the largest database integer


def test_an_absent_or_expired_session_has_no_items_and_nothing_is_created(
    store: Any, migrated_url: str
) -> None:
    assert store.last_items("nobody", FORMAT) == []
    assert store.list() == []
    store.append("old", item_message({"i": 1}))
    expired = datetime.now(timezone.utc) - timedelta(seconds=1)
    execute(migrated_url, "UPDATE sessions SET expires_at = :t WHERE id = 'old'", t=expired)
    assert store.last_items("old", FORMAT) == []
    assert store.last_items("old", FORMAT, 1) == []


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("s", FORMAT, 0), "limit"),
        (("s", FORMAT, "3"), "limit"),
        pytest.param(("s", FORMAT, 2**63), "limit", id="limit-2**63"),
        pytest.param(("s", FORMAT, 10**400), "limit", id="limit-10**400"),
        (("s", 3), "item_format"),
        (("s", "a\x00b"), "item_format"),
        (("", FORMAT), "session_id"),
    ],
)
def test_bad_arguments_are_rejected_naming_the_field(
    store: Any, args: tuple[Any, ...], field: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        store.last_items(*args)
    assert caught.value.field == field
