"""Lossless framework items on messages (kind, item_format, item) and the tail operations
framework backends need (last_messages, pop, clear), through Store and AsyncStore."""

from __future__ import annotations

import datetime
import decimal
import json
import math
import threading
from typing import Any

import pytest

from sqlsessions import (
    InvalidInputError,
    Message,
    Role,
    Session,
    Store,
    StoreConfig,
    ToolCall,
    ToolFunction,
    migrate,
)
from sqlsessions.transfer import export_lines, import_session, session_from_document

REASONING = {
    "type": "reasoning",
    "id": "rs_0123456789abcdef",
    "summary": [{"type": "summary_text", "text": "Thinking about flights."}],
    "encrypted_content": "gAAAAABo\u00e9\U0001f6eb==",
    "numbers": [1, 1.0, 0.1, 1e-7, 2**70, 1e16, -2.5e300, 5e-324, None, True, False, ""],
    "nested": {"z": {"y": []}, "a": {}},
}
IMAGE_MESSAGE = {
    "type": "message",
    "id": "msg_abc",
    "role": "user",
    "content": [
        {"type": "input_text", "text": "What is in this picture?"},
        {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"},
    ],
}


def reasoning_item(**overrides: Any) -> Message:
    fields: dict[str, Any] = {
        "role": Role.ASSISTANT,
        "kind": "reasoning",
        "item_format": "openai-agents",
        "item": REASONING,
    }
    fields.update(overrides)
    return Message(**fields)


def conversation() -> list[Message]:
    return [
        Message(role=Role.USER, content="What is in this picture?", item=IMAGE_MESSAGE,
                item_format="openai-agents"),
        reasoning_item(),
        Message(
            role=Role.ASSISTANT,
            tool_calls=[ToolCall(id="call_1", function=ToolFunction(name="look", arguments="{}"))],
            item={"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "look",
                  "arguments": "{}"},
            item_format="openai-agents",
        ),
        Message(role=Role.TOOL, content="a cat", tool_call_id="call_1"),
        Message(role=Role.ASSISTANT, content="A cat."),
    ]  # fmt: skip


def as_json(value: Any) -> str:
    """The JSON text of a value, keys sorted: equal text means JSON-equal, types included."""
    return json.dumps(value, sort_keys=True)


def dumped(messages: list[Message]) -> list[str]:
    return [as_json(message.model_dump(mode="json")) for message in messages]


# --- the model ---------------------------------------------------------------------------------


def test_a_message_without_an_item_keeps_the_go_json_form() -> None:
    assert Message(role=Role.USER, content="hi").model_dump(mode="json") == {
        "role": "user",
        "content": "hi",
    }


def test_a_message_with_an_item_writes_kind_format_and_item_in_json_and_loads_them_back() -> None:
    message = reasoning_item()
    data = json.loads(message.model_dump_json())
    assert data["kind"] == "reasoning"
    assert data["item_format"] == "openai-agents"
    assert as_json(data["item"]) == as_json(REASONING)
    assert Message.model_validate_json(message.model_dump_json()) == message


def test_the_item_is_a_copy_so_changing_the_callers_dict_changes_nothing() -> None:
    item = {"type": "message", "content": [{"text": "a"}]}
    message = Message(role=Role.USER, item=item)
    item["content"][0]["text"] = "changed"
    assert message.item == {"type": "message", "content": [{"text": "a"}]}


def _nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("item", "stored"),
    [
        ({"text": "a backslash then u0000: \\u0000"}, {"text": "a backslash then u0000: \\u0000"}),
        ({"brackets": "[[[{{{" * 40}, {"brackets": "[[[{{{" * 40}),
        ({"tuple": (1, (2, "x"))}, {"tuple": [1, [2, "x"]]}),
        ({"x": _nested(99)}, {"x": _nested(99)}),
        (
            {"big": 10**40, "float": 0.1, "neg_zero": -0.0},
            {"big": 10**40, "float": 0.1, "neg_zero": -0.0},
        ),
        (
            {"words": ["NaN", "-Infinity", "a:NaN", "[Infinity"]},
            {"words": ["NaN", "-Infinity", "a:NaN", "[Infinity"]},
        ),
    ],
)
def test_an_item_at_the_edges_of_valid_json_is_kept_as_given(item: Any, stored: Any) -> None:
    message = Message(role=Role.ASSISTANT, item=item)
    assert message.item == stored
    assert json.dumps(message.item) == json.dumps(stored)


def test_messages_with_items_are_hashable_and_equal_by_value() -> None:
    assert hash(reasoning_item()) == hash(reasoning_item())
    assert reasoning_item() == reasoning_item()
    assert reasoning_item() != reasoning_item(kind="compaction")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"item": {"x": math.nan}}, "item"),
        ({"item": {"x": [math.inf]}}, "item"),
        ({"item": {1: "non-string key"}}, "item"),
        ({"item": {"x": "nul \x00 inside"}}, "item"),
        ({"item": {"nul \x00 in a key": 1}}, "item"),
        ({"item": {"x": "lone \ud800 surrogate"}}, "item"),
        ({"item": {True: "a key that is a bool"}}, "item"),
        ({"item": {"x": _nested(100)}}, "item"),
        ({"item": {"x": object()}}, "item"),
        ({"item": {"x": b"bytes"}}, "item"),
        ({"item": {"x": datetime.date(2026, 1, 2)}}, "item"),
        ({"item": {"x": decimal.Decimal("1.5")}}, "item"),
        ({"item": ["not", "an", "object"]}, "item"),
        ({"item": "text"}, "item"),
        ({"kind": ""}, "kind"),
        ({"kind": "k" * 33}, "kind"),
        ({"kind": 3}, "kind"),
        ({"item_format": "a\x00b"}, "item_format"),
    ],
)
def test_an_item_that_is_not_json_or_a_bad_kind_is_rejected_naming_the_field(
    fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        Message(role=Role.ASSISTANT, **fields)
    assert caught.value.field == field


# --- storage -----------------------------------------------------------------------------------


def test_items_appended_read_back_json_equal_in_order(store: Any) -> None:
    store.append("s", *conversation())
    store.clear_cache()
    assert dumped(store.get("s").messages) == dumped(conversation())
    assert dumped(store.history("s", 10)) == dumped(conversation())
    assert dumped(store.last_messages("s")) == dumped(conversation())
    item = store.get("s").messages[1].item
    assert item["numbers"][1] == 1.0 and isinstance(item["numbers"][1], float)
    assert item["numbers"][4] == 2**70 and isinstance(item["numbers"][4], int)
    assert item["numbers"][5] == 1e16 and isinstance(item["numbers"][5], float)


def test_items_appended_one_at_a_time_read_back_json_equal(store: Any) -> None:
    for message in conversation():
        store.append("s", message)
    store.clear_cache()
    assert dumped(store.get("s").messages) == dumped(conversation())


def test_items_saved_with_a_session_read_back_json_equal(store: Any) -> None:
    session = store.get("s")
    session.messages.extend(conversation()[:2])
    store.save(session)
    session.messages.extend(conversation()[2:])
    store.save(session)
    store.clear_cache()
    assert dumped(store.get("s").messages) == dumped(conversation())


def test_an_edited_item_is_saved(store: Any) -> None:
    store.append("s", reasoning_item())
    session = store.get("s")
    session.messages[0] = session.messages[0].replace(item={"type": "reasoning", "id": "rs_2"})
    store.save(session)
    store.clear_cache()
    assert store.get("s").messages[0].item == {"type": "reasoning", "id": "rs_2"}


def test_a_bad_item_given_as_a_dict_to_append_stores_nothing(store: Any) -> None:
    with pytest.raises(InvalidInputError) as caught:
        store.append(
            "s",
            {"role": "user", "content": "fine"},
            {"role": "assistant", "item": {"x": math.nan}},
        )
    assert caught.value.field == "messages[1].item"
    assert store.list() == []


def test_items_survive_a_json_export_and_import(db_url: str) -> None:
    migrate(db_url)
    with Store(StoreConfig(url=db_url)) as store:
        store.append("s", *conversation())
        lines = list(export_lines(store))
        store.delete("s")
        for line in lines:
            import_session(store, session_from_document(json.loads(line)))
        store.clear_cache()
        assert dumped(store.get("s").messages) == dumped(conversation())


def test_a_session_with_items_loads_in_the_go_form_which_ignores_the_extra_keys() -> None:
    session = Session.new("s")
    session.messages.extend(conversation())
    go_view = json.loads(session.to_json())
    for message in go_view["messages"]:  # what the Go package keeps of each message
        for key in ("kind", "item_format", "item"):
            message.pop(key, None)
    loaded = Session.model_validate(go_view)
    assert [m.role for m in loaded.messages] == [m.role for m in conversation()]
    assert loaded.messages[2].tool_calls == conversation()[2].tool_calls


# --- last_messages, pop, clear -------------------------------------------------------------------


def numbered(n: int) -> list[Message]:
    return [Message(role=Role.USER, content=f"m{i}", item={"i": i}) for i in range(n)]


def test_last_messages_returns_exactly_the_last_n_oldest_first(store: Any) -> None:
    store.append(
        "s",
        Message(
            role=Role.ASSISTANT,
            content="",
            tool_calls=[ToolCall(id="c", function=ToolFunction(name="f", arguments="{}"))],
        ),
    )
    store.append("s", Message(role=Role.TOOL, content="r", tool_call_id="c"), *numbered(3))
    assert [m.content for m in store.last_messages("s", 3)] == ["m0", "m1", "m2"]
    # Exactly N even when the window opens on a tool result (history would widen it).
    assert [m.content for m in store.last_messages("s", 4)] == ["r", "m0", "m1", "m2"]
    last_five = store.last_messages("s", 5)
    assert last_five[0].tool_calls is not None and last_five[0].tool_calls[0].id == "c"
    assert len(store.last_messages("s", 100)) == 5
    assert len(store.last_messages("s")) == 5  # fmt: skip


def test_last_messages_of_an_absent_session_is_empty_and_creates_nothing(store: Any) -> None:
    assert store.last_messages("nobody") == []
    assert store.list() == []


def test_last_messages_rejects_a_limit_below_one(store: Any) -> None:
    with pytest.raises(InvalidInputError):
        store.last_messages("s", 0)


@pytest.mark.parametrize("limit", [2**63, 10**400], ids=["2**63", "10**400"])
def test_last_messages_rejects_a_limit_no_database_integer_holds(store: Any, limit: int) -> None:
    with pytest.raises(InvalidInputError) as caught:
        store.last_messages("s", limit)
    assert caught.value.field == "limit"
    store.append("s", Message(role=Role.USER, content="m"))
    assert len(store.last_messages("s", 2**63 - 1)) == 1  # the largest database integer


def test_pop_removes_and_returns_the_last_message_with_its_item_and_tool_calls(store: Any) -> None:
    store.append("s", *conversation())
    session = store.get("s")  # cached: must not be served stale after the pop
    assert session.messages[-1].content == "A cat."
    assert store.pop("s") == conversation()[-1]
    assert store.pop("s") == conversation()[-2]
    popped = store.pop("s")
    assert popped is not None and dumped([popped]) == dumped([conversation()[2]])
    assert dumped(store.get("s").messages) == dumped(conversation()[:2])
    assert store.list_sessions().sessions[0].message_count == 2
    store.append("s", Message(role=Role.USER, content="after"))
    assert [m.content for m in store.last_messages("s", 1)] == ["after"]


def test_pop_of_an_empty_or_absent_session_returns_none(store: Any) -> None:
    assert store.pop("nobody") is None
    store.get("empty")
    assert store.pop("empty") is None


def test_clear_removes_every_message_and_keeps_the_session_and_its_metadata(store: Any) -> None:
    store.append("s", *conversation())
    session = store.get("s")
    session.set_metadata("channel", "web")
    store.save(session)
    assert store.clear("s") == len(conversation())
    cleared = store.get("s")
    assert cleared.messages == [] and cleared.metadata == {"channel": "web"}
    assert store.clear("s") == 0
    assert store.clear("nobody") == 0
    store.append("s", Message(role=Role.USER, content="again"))
    assert [m.content for m in store.get("s").messages] == ["again"]


def test_concurrent_pops_never_return_the_same_message(db_url: str) -> None:
    migrate(db_url)
    with Store(StoreConfig(url=db_url)) as store:
        store.append("s", *numbered(40))
        popped: list[Message | None] = []
        lock = threading.Lock()

        def worker() -> None:
            with Store(StoreConfig(url=db_url)) as own:
                for _ in range(10):
                    message = own.pop("s")
                    with lock:
                        popped.append(message)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        contents = sorted(m.content for m in popped if m is not None)
        assert contents == sorted(f"m{i}" for i in range(40))
        assert store.last_messages("s") == []


# --- analytics ---------------------------------------------------------------------------------


def test_the_views_count_chat_messages_only_and_the_tool_calls_of_items(db_url: str) -> None:
    from sqlsessions.analytics import read_view

    migrate(db_url)
    with Store(StoreConfig(url=db_url)) as store:
        store.append("s", *conversation(), reasoning_item(), reasoning_item(kind="compaction"))
        summary = read_view(store.engine, "session_summary").as_dicts()
        daily = read_view(store.engine, "daily_activity").as_dicts()
        tools = read_view(store.engine, "tool_usage").as_dicts()
    assert [(r["user_messages"], r["assistant_messages"], r["tool_messages"]) for r in summary] == [
        (1, 2, 1)
    ]
    assert summary[0]["total_messages"] == 4 and summary[0]["tool_call_count"] == 1
    assert [r["messages"] for r in daily] == [4]
    assert [(r["function_name"], r["calls"]) for r in tools] == [("look", 1)]
