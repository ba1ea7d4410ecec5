"""The domain models: Session methods, the Go JSON form, timestamps and input validation."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sqlsessions.errors import InvalidInputError
from sqlsessions.models import (
    Message,
    Role,
    Session,
    ToolCall,
    ToolFunction,
    format_timestamp,
    parse_timestamp,
)

UTC = timezone.utc
OLD = datetime(2000, 1, 1, tzinfo=UTC)

GO_DOCUMENT = (
    '{"id":"s1","agent_id":"a","messages":[{"role":"user","content":"hi"},'
    '{"role":"assistant","content":"","tool_calls":[{"id":"c1","type":"function",'
    '"function":{"name":"search","arguments":"{\\"q\\":\\"x\\"}"}}]},'
    '{"role":"tool","content":"3 results","tool_call_id":"c1"}],'
    '"created_at":"2026-04-26T10:11:12.123456789+02:00","updated_at":"2026-04-26T08:11:13.5Z",'
    '"metadata":{"channel":"slack","n":3,"nested":{"a":[1,2.5,null,true]}}}'
)
GO_DOCUMENT_WITH_NULLS = (
    '{"id":"s2","messages":null,"created_at":"2026-04-26T08:00:00Z",'
    '"updated_at":"2026-04-26T08:00:00Z"}'
)


def aged_session(**fields: Any) -> Session:
    """A session whose updated_at is far in the past, so any bump is visible without sleeping."""
    session = Session.new("s", **fields)
    session.updated_at = OLD
    return session


def search_call(call_id: str = "c1") -> ToolCall:
    return ToolCall(id=call_id, function=ToolFunction(name="search", arguments='{"q": "x"}'))


def invalid(exc_info: pytest.ExceptionInfo[InvalidInputError]) -> tuple[str, str]:
    return exc_info.value.field, exc_info.value.reason


# ------------------------------------------------------------------ construction and methods


def test_new_session_is_empty_with_equal_utc_timestamps() -> None:
    session = Session.new("chat-1", agent_id="bot")
    assert (session.id, session.agent_id, session.messages, session.metadata) == (
        "chat-1",
        "bot",
        [],
        {},
    )
    assert session.created_at == session.updated_at
    assert session.created_at.tzinfo is not None
    assert session.created_at.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - session.created_at) < timedelta(seconds=5)


def test_plain_construction_defaults_like_new() -> None:
    session = Session(id="x")
    assert session.agent_id == "" and session.messages == [] and session.metadata == {}
    assert session.created_at == session.updated_at
    only_updated = Session.model_validate({"id": "x", "updated_at": OLD})
    assert only_updated.created_at == only_updated.updated_at == OLD


def test_add_message_appends_accepts_role_strings_and_bumps_updated_at() -> None:
    session = aged_session()
    first = session.add_message(Role.USER, "hi")
    second = session.add_message("assistant", "hello")
    assert session.messages == [first, second]
    assert first == Message(role=Role.USER, content="hi")
    assert second.role is Role.ASSISTANT
    assert session.updated_at > OLD


def test_add_message_with_tool_calls_stores_them_as_a_tuple_and_bumps_updated_at() -> None:
    session = aged_session()
    message = session.add_message_with_tool_calls(Role.ASSISTANT, "", [search_call()])
    assert message.tool_calls == (search_call(),)
    assert session.messages == [message]
    assert session.updated_at > OLD


def test_add_tool_result_appends_a_tool_message_carrying_the_call_id_and_bumps() -> None:
    session = aged_session()
    message = session.add_tool_result("c1", "3 results")
    assert (message.role, message.tool_call_id, message.content) == (Role.TOOL, "c1", "3 results")
    assert session.messages == [message]
    assert session.updated_at > OLD


def test_get_messages_returns_a_copy_that_does_not_touch_the_session() -> None:
    session = Session.new("s")
    session.add_message(Role.USER, "hi")
    copy = session.get_messages()
    copy.clear()
    copy.append(Message(role=Role.SYSTEM))
    assert [m.content for m in session.messages] == ["hi"]


def test_set_metadata_stores_the_value_and_bumps_updated_at() -> None:
    session = aged_session()
    session.set_metadata("channel", "slack")
    assert session.metadata == {"channel": "slack"}
    assert session.updated_at > OLD


def test_get_metadata_returns_value_and_found_flag_without_bumping() -> None:
    session = Session.new("s")
    session.set_metadata("n", 0)
    session.updated_at = OLD
    assert session.get_metadata("n") == (0, True)
    assert session.get_metadata("missing") == (None, False)
    assert session.get_messages() == []
    assert session.updated_at == OLD


def test_clear_drops_every_message_and_bumps_updated_at() -> None:
    session = aged_session()
    session.add_message(Role.USER, "a")
    session.updated_at = OLD
    session.clear()
    assert session.messages == []
    assert session.updated_at > OLD


@pytest.mark.parametrize(
    ("n", "kept"),
    [(2, ["c", "d"]), (0, []), (4, ["a", "b", "c", "d"]), (10, ["a", "b", "c", "d"])],
)
def test_trim_keeps_the_last_n_messages_and_bumps_updated_at(n: int, kept: list[str]) -> None:
    session = Session.new("s")
    for text in "abcd":
        session.add_message(Role.USER, text)
    session.updated_at = OLD
    session.trim(n)
    assert [m.content for m in session.messages] == kept
    assert session.updated_at > OLD


def test_trim_refuses_a_negative_count() -> None:
    session = aged_session()
    with pytest.raises(InvalidInputError) as exc_info:
        session.trim(-1)
    assert exc_info.value.field == "n"
    assert session.updated_at == OLD


# ------------------------------------------------------------------ immutable messages


def test_messages_are_frozen_hashable_and_equal_by_value() -> None:
    a = Message(role="assistant", tool_calls=[search_call()])
    b = Message(role=Role.ASSISTANT, content="", tool_calls=(search_call(),))
    assert a == b and hash(a) == hash(b)
    assert [Role.USER, Role.TOOL] == ["user", "tool"]
    with pytest.raises(InvalidInputError):
        a.content = "changed"  # type: ignore[misc]
    with pytest.raises(InvalidInputError):
        a.tool_calls[0].function.arguments = "{}"  # type: ignore[index,misc]


def test_replace_returns_a_validated_copy_and_leaves_the_original_alone() -> None:
    original = Message(role=Role.USER, content="hi")
    changed = original.replace(content="bye", name="ann")
    assert (changed.content, changed.name, changed.role) == ("bye", "ann", Role.USER)
    assert original.content == "hi"
    assert original.model_copy(update={"content": "bye", "name": "ann"}) == changed


def test_replace_and_model_copy_revalidate_the_new_values() -> None:
    message = Message(role=Role.USER, content="hi")
    with pytest.raises(InvalidInputError) as exc_info:
        message.replace(content="a\x00b")
    assert exc_info.value.field == "content"
    with pytest.raises(InvalidInputError) as exc_info:
        message.model_copy(update={"role": "robot"})
    assert exc_info.value.field == "role"
    with pytest.raises(InvalidInputError) as exc_info:
        message.replace(contents="typo")
    assert exc_info.value.field == "contents"


def test_replacing_a_message_in_a_session_is_the_way_to_edit_it() -> None:
    session = Session.new("s")
    session.add_message(Role.USER, "draft")
    session.messages[0] = session.messages[0].replace(content="final")
    assert session.get_messages()[0].content == "final"


# ------------------------------------------------------------------ JSON form


def test_a_document_written_by_go_loads() -> None:
    session = Session.from_json(GO_DOCUMENT)
    assert session.id == "s1" and session.agent_id == "a"
    assert session.messages == [
        Message(role=Role.USER, content="hi"),
        Message(
            role=Role.ASSISTANT,
            tool_calls=(
                ToolCall(id="c1", function=ToolFunction(name="search", arguments='{"q":"x"}')),
            ),
        ),
        Message(role=Role.TOOL, content="3 results", tool_call_id="c1"),
    ]
    assert session.created_at == datetime(2026, 4, 26, 8, 11, 12, 123456, tzinfo=UTC)
    assert session.updated_at == datetime(2026, 4, 26, 8, 11, 13, 500000, tzinfo=UTC)
    assert session.metadata == {"channel": "slack", "n": 3, "nested": {"a": [1, 2.5, None, True]}}


def test_a_go_document_is_written_back_in_the_same_form() -> None:
    written = json.loads(Session.from_json(GO_DOCUMENT).to_json())
    expected = json.loads(GO_DOCUMENT)
    expected["created_at"] = "2026-04-26T08:11:12.123456Z"  # UTC, truncated to microseconds
    assert written == expected
    assert list(written) == ["id", "agent_id", "messages", "created_at", "updated_at", "metadata"]


def test_null_messages_and_missing_optional_keys_load_as_empty() -> None:
    session = Session.from_json(GO_DOCUMENT_WITH_NULLS)
    assert (session.agent_id, session.messages, session.metadata) == ("", [], {})
    assert json.loads(session.to_json()) == {
        "id": "s2",
        "messages": [],
        "created_at": "2026-04-26T08:00:00Z",
        "updated_at": "2026-04-26T08:00:00Z",
    }


@pytest.mark.parametrize("document", [GO_DOCUMENT, GO_DOCUMENT_WITH_NULLS])
def test_to_json_then_from_json_round_trips_to_an_equal_session(document: str) -> None:
    session = Session.from_json(document)
    assert Session.from_json(session.to_json()) == session
    assert Session.from_json(session.to_json().encode()) == session


def test_model_dump_json_and_model_validate_json_use_the_go_form() -> None:
    session = Session.from_json(GO_DOCUMENT)
    assert session.model_dump_json() == session.to_json()
    assert json.loads(session.to_json()) == session.model_dump(mode="json")
    assert Session.model_validate_json(session.to_json()) == session


def test_message_json_always_has_content_and_omits_empty_optional_keys() -> None:
    bare = Message(role=Role.ASSISTANT, name="", tool_call_id="", tool_calls=[])
    assert json.loads(bare.model_dump_json()) == {"role": "assistant", "content": ""}
    assert (bare.name, bare.tool_call_id, bare.tool_calls) == (None, None, None)
    full = Message(role=Role.TOOL, content="x", name="n", tool_call_id="c1")
    assert json.loads(full.model_dump_json()) == {
        "role": "tool",
        "content": "x",
        "name": "n",
        "tool_call_id": "c1",
    }


def test_empty_tool_calls_in_input_load_as_none() -> None:
    for calls in ("null", "[]"):
        message = Message.model_validate_json(f'{{"role":"assistant","tool_calls":{calls}}}')
        assert message.tool_calls is None


def test_tool_call_type_defaults_to_function_and_arguments_stay_a_string() -> None:
    call = ToolCall.model_validate({"id": "c", "function": {"name": "f", "arguments": "not json"}})
    assert call.type == "function"
    assert call.function.arguments == "not json"
    assert json.loads(call.model_dump_json()) == {
        "id": "c",
        "type": "function",
        "function": {"name": "f", "arguments": "not json"},
    }


# ------------------------------------------------------------------ timestamps


def test_timestamps_with_offsets_and_nanoseconds_are_normalised_to_utc_microseconds() -> None:
    assert parse_timestamp("2026-04-26T10:11:12.123456789+02:00") == datetime(
        2026, 4, 26, 8, 11, 12, 123456, tzinfo=UTC
    )
    assert parse_timestamp("2026-04-26T01:00:00-07:00") == datetime(2026, 4, 26, 8, tzinfo=UTC)
    assert parse_timestamp("2026-04-26T08:00:00.5Z") == datetime(
        2026, 4, 26, 8, 0, 0, 500000, tzinfo=UTC
    )


def test_timestamps_are_written_in_utc_with_trailing_zeros_trimmed() -> None:
    assert format_timestamp(datetime(2026, 11, 24, 21, 59, 3, 123400, tzinfo=UTC)) == (
        "2026-11-24T21:59:03.1234Z"
    )
    assert format_timestamp(datetime(2026, 11, 24, 21, 59, 3, tzinfo=UTC)) == (
        "2026-11-24T21:59:03Z"
    )
    plus_two = timezone(timedelta(hours=2))
    assert format_timestamp(datetime(2026, 1, 1, 1, 0, tzinfo=plus_two)) == ("2025-12-31T23:00:00Z")


def test_naive_and_offset_datetimes_are_stored_as_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    session = Session(
        id="s",
        created_at=datetime(2026, 1, 1, 12, 0),
        updated_at=datetime(2026, 1, 1, 12, 0, tzinfo=plus_two),
    )
    assert session.created_at == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert session.created_at.utcoffset() == timedelta(0)
    assert session.updated_at == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert session.updated_at.tzinfo == UTC


@given(st.datetimes(timezones=st.just(UTC)))
def test_any_utc_datetime_survives_format_then_parse(moment: datetime) -> None:
    assert parse_timestamp(format_timestamp(moment)) == moment


# ------------------------------------------------------------------ invalid input


@pytest.mark.parametrize(
    ("session_id", "reason_part"),
    [("", "empty"), ("x" * 256, "255"), (42, "string"), (None, "string"), ("a\x00", "NUL")],
)
def test_a_bad_session_id_is_refused_naming_the_id(session_id: Any, reason_part: str) -> None:
    with pytest.raises(InvalidInputError) as exc_info:
        Session(id=session_id)
    field, reason = invalid(exc_info)
    assert field == "id" and reason_part in reason


def test_a_session_id_of_255_characters_is_accepted() -> None:
    assert Session.new("x" * 255).id == "x" * 255


def test_an_unknown_role_is_refused_listing_the_allowed_ones() -> None:
    session = Session.new("s")
    with pytest.raises(InvalidInputError) as exc_info:
        session.add_message("robot", "hi")
    field, reason = invalid(exc_info)
    assert field == "role"
    assert all(name in reason for name in ("system", "user", "assistant", "tool"))
    assert session.messages == []


@pytest.mark.parametrize(
    ("content", "reason_part"), [("a\x00b", "NUL"), ("bad \udc80", "surrogate"), (5, "string")]
)
def test_unstorable_content_is_refused_naming_content(content: Any, reason_part: str) -> None:
    session = aged_session()
    with pytest.raises(InvalidInputError) as exc_info:
        session.add_message(Role.USER, content)
    field, reason = invalid(exc_info)
    assert field == "content" and reason_part in reason
    assert session.messages == [] and session.updated_at == OLD


def test_errors_in_nested_values_name_the_full_path() -> None:
    document = json.loads(GO_DOCUMENT)
    document["messages"][1]["tool_calls"][0]["function"]["arguments"] = {"q": "x"}
    with pytest.raises(InvalidInputError) as exc_info:
        Session.model_validate(document)
    assert exc_info.value.field == "messages[1].tool_calls[0].function.arguments"

    document = json.loads(GO_DOCUMENT)
    document["messages"][2]["content"] = "nul \x00"
    with pytest.raises(InvalidInputError) as exc_info:
        Session.from_json(json.dumps(document))
    assert exc_info.value.field == "messages[2].content"


def test_non_string_tool_arguments_are_refused() -> None:
    with pytest.raises(InvalidInputError) as exc_info:
        ToolFunction(name="search", arguments={"q": "x"})
    assert exc_info.value.field == "arguments"
    with pytest.raises(InvalidInputError) as exc_info:
        Session.new("s").add_message_with_tool_calls(
            Role.ASSISTANT,
            "",
            [{"id": "c", "function": {"name": "f", "arguments": 1}}],  # type: ignore[list-item]
        )
    assert exc_info.value.field == "tool_calls[0].function.arguments"


def test_invalid_json_is_refused_naming_json() -> None:
    for document in (
        '{"id": "s"',
        b"\xff",
        '{"id":"s","messages":[{"role":"user","content":"\\ud800"}]}',
    ):
        with pytest.raises(InvalidInputError) as exc_info:
            Session.from_json(document)
        assert exc_info.value.field == "json"


@pytest.mark.parametrize(
    ("value", "reason_part"),
    [
        (float("nan"), "NaN"),
        ({"deep": [float("inf")]}, "NaN"),
        ({1, 2}, "serialisable"),
        (object(), "serialisable"),
        ({"a": "nul\x00"}, "NUL"),
        (["\ud800"], "surrogate"),
        ({1: "int key"}, "key"),
    ],
)
def test_set_metadata_refuses_values_that_are_not_storable_json(
    value: Any, reason_part: str
) -> None:
    session = aged_session()
    with pytest.raises(InvalidInputError) as exc_info:
        session.set_metadata("k", value)
    field, reason = invalid(exc_info)
    assert field == "metadata[k]" and reason_part in reason
    assert session.metadata == {} and session.updated_at == OLD


@pytest.mark.parametrize("key", ["", "a\x00", 7])
def test_set_metadata_refuses_bad_keys(key: Any) -> None:
    with pytest.raises(InvalidInputError) as exc_info:
        Session.new("s").set_metadata(key, "v")
    assert exc_info.value.field == "metadata key"


def test_metadata_is_validated_when_a_session_is_built_or_loaded() -> None:
    with pytest.raises(InvalidInputError) as exc_info:
        Session(id="s", metadata={"x": float("nan")})
    assert exc_info.value.field == "metadata[x]"
    with pytest.raises(InvalidInputError) as exc_info:
        Session.from_json('{"id":"s","metadata":{"x":NaN}}')
    assert exc_info.value.field == "metadata[x]"


def test_a_bad_timestamp_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidInputError) as exc_info:
        Session.from_json('{"id":"s","created_at":"yesterday","updated_at":"2026-04-26T08:00:00Z"}')
    assert exc_info.value.field == "created_at"
    with pytest.raises(InvalidInputError) as exc_info:
        Session(id="s", updated_at=1_700_000_000)
    assert exc_info.value.field == "updated_at"


def test_invalid_input_error_is_a_value_error_not_a_pydantic_error() -> None:
    with pytest.raises(InvalidInputError) as exc_info:
        Message.model_validate({"role": "user", "content": None, "name": 3})
    assert isinstance(exc_info.value, ValueError)
    assert exc_info.value.field == "name"
    assert type(exc_info.value.__cause__).__name__ == "ValidationError"
