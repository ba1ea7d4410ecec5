"""Messages read from the store are built in bulk from trusted rows (statements.messages_from_rows,
models.trusted_values), without pydantic validation: they must still be exactly the messages
that were written, on every read path, through the driver fast path and through SQLAlchemy."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from sqlsessions import InvalidInputError, Message, Role, ToolCall, ToolFunction
from store_fixtures import recorded_statements


def _call(call_id: str, name: str) -> ToolCall:
    return ToolCall(
        id=call_id, function=ToolFunction(name=name, arguments=f'{{"id": "{call_id}"}}')
    )


def _conversation() -> list[Message]:
    """Every kind of field a stored message can carry."""
    return [
        Message(role=Role.SYSTEM, content="be brief"),
        Message(role=Role.USER, content="weather and news?", name="ana"),
        Message(
            role=Role.ASSISTANT,
            content="",
            tool_calls=[_call("c1", "weather"), _call("c2", "news"), _call("c3", "weather")],
            model="gpt-x",
            input_tokens=120,
            output_tokens=30,
            cached_tokens=100,
            reasoning_tokens=12,
        ),
        Message(role=Role.TOOL, content="sunny", tool_call_id="c1"),
        Message(role=Role.TOOL, content="calm", tool_call_id="c2"),
        Message(role=Role.TOOL, content="still sunny", tool_call_id="c3"),
        Message(
            role=Role.ASSISTANT,
            content="",
            kind="reasoning",
            item_format="openai-agents",
            item={"type": "reasoning", "summary": [{"text": "é ☃", "n": 1.5}], "ok": None},
        ),
        Message(role=Role.ASSISTANT, content="Sunny and calm.", tool_calls=[_call("c4", "log")]),
    ]


def _assert_same_messages(read: list[Message], written: list[Message]) -> None:
    assert read == written
    for got, want in zip(read, written, strict=True):
        assert type(got) is Message
        assert hash(got) == hash(want)
        assert got.model_dump() == want.model_dump()
        assert isinstance(got.role, Role)
        assert got.tool_calls is None or isinstance(got.tool_calls, tuple)
        assert [c.id for c in got.tool_calls or ()] == [c.id for c in want.tool_calls or ()]
        assert pickle.loads(pickle.dumps(got)) == want
        with pytest.raises(InvalidInputError):
            got.content = "changed"  # type: ignore[misc]
        assert got.replace(content="changed").content == "changed"
        assert got.content == want.content  # the copy left the original alone


def test_messages_read_back_on_every_path_are_the_messages_written(
    store: Any, open_store: Any
) -> None:
    written = _conversation()
    store.append("s", *written[:5])
    reader = open_store()
    cached = reader.get_if_exists("s")  # a cold load
    _assert_same_messages(cached.messages, written[:5])

    store.append("s", *written[5:])
    caught_up = reader.get_if_exists("s")  # the cache catches up with the appended rows
    _assert_same_messages(caught_up.messages, written)
    reader.clear_cache()
    _assert_same_messages(reader.get_if_exists("s").messages, written)
    _assert_same_messages(reader.history("s", limit=100), written)
    _assert_same_messages(reader.history("s", limit=3), written[2:])  # widened to the caller
    _assert_same_messages(reader.last_messages("s", 2), written[-2:])


def test_a_load_through_sqlalchemy_equals_the_load_on_the_driver_fast_path(
    store: Any, open_store: Any
) -> None:
    written = _conversation()
    session = store.get("s")
    session.messages.extend(written)
    session.set_metadata("channel", {"name": "slack", "ids": [1, 2]})
    store.save(session)

    fast = open_store().get_if_exists("s")
    through_sqlalchemy = open_store()
    with recorded_statements(through_sqlalchemy.engine) as log:  # a statement listener turns
        slow = through_sqlalchemy.get_if_exists("s")  # the fast path off
    assert log.matching("SELECT", "messages")
    _assert_same_messages(fast.messages, written)
    _assert_same_messages(slow.messages, written)
    assert fast.metadata == slow.metadata == {"channel": {"name": "slack", "ids": [1, 2]}}
    assert (fast.created_at, fast.updated_at) == (slow.created_at, slow.updated_at)
