"""The sessions Skill: each tool through its handler, valid and invalid, on both dialects."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from sqlsessions import (
    DEFAULT_SESSION_TTL,
    Role,
    Skill,
    SqlSessionsError,
    Store,
    StoreConfig,
    ToolCall,
    ToolFunction,
)
from sqlsessions.models import parse_timestamp

TOOL_NAMES = [
    "sessions_list",
    "sessions_history",
    "sessions_get",
    "sessions_clear",
    "sessions_delete",
    "sessions_metadata_set",
    "sessions_metadata_get",
]


@pytest.fixture
def skill(migrated_url: str) -> Iterator[Skill]:
    skill = Skill()
    skill.set_storage(migrated_url)
    skill.init()
    yield skill
    skill.close()


def run(skill: Skill, name: str, arguments: Any) -> dict[str, Any]:
    """Call a tool's handler the way an agent framework would."""
    tool = next(tool for tool in skill.tools() if tool.name == name)
    result = tool.handler(arguments)
    json.dumps(result)  # every result is JSON-serialisable
    return result


def make_session(skill: Skill, session_id: str, n_messages: int = 0, agent_id: str = "") -> None:
    session = skill.store.get(session_id)
    session.agent_id = agent_id
    for i in range(n_messages):
        session.add_message(Role.USER if i % 2 == 0 else Role.ASSISTANT, f"message {i}")
    skill.store.save(session)


def assert_error(result: dict[str, Any], *words: str) -> None:
    assert set(result) == {"error"}, result
    for word in words:
        assert word in result["error"], result["error"]


# --- the skill itself ----------------------------------------------------------------------


def test_the_skill_is_named_sessions_and_describes_itself_like_the_go_package() -> None:
    assert Skill.name == "sessions"
    assert Skill.description == (
        "Manage conversation sessions, view history, and interact with other sessions"
    )


def test_init_without_storage_fails_with_a_clear_message() -> None:
    skill = Skill()
    with pytest.raises(SqlSessionsError, match="set_storage"):
        skill.init()


def test_a_tool_called_before_storage_is_set_returns_an_error_result() -> None:
    assert_error(run(Skill(), "sessions_list", {}), "set_storage")


def test_set_storage_with_a_url_builds_a_store_with_the_default_ttl(migrated_url: str) -> None:
    with Skill(migrated_url) as skill:
        skill.init()
        assert skill.store.config.ttl == DEFAULT_SESSION_TTL


def test_set_storage_accepts_an_existing_store_and_close_leaves_it_open(migrated_url: str) -> None:
    with Store(StoreConfig(url=migrated_url)) as store:
        skill = Skill()
        skill.set_storage(store)
        skill.init()
        assert (
            run(skill, "sessions_metadata_set", {"session_id": "a", "key": "k", "value": "1"})[
                "status"
            ]
            == "set"
        )
        skill.close()
        assert store.get_if_exists("a").metadata == {"k": 1}


def test_set_storage_rejects_something_that_is_not_storage() -> None:
    with pytest.raises(SqlSessionsError, match="Store"):
        Skill().set_storage(42)  # type: ignore[arg-type]


def test_tools_are_the_seven_session_tools_with_json_schemas(skill: Skill) -> None:
    tools = skill.tools()
    assert [tool.name for tool in tools] == TOOL_NAMES
    for tool in tools:
        assert tool.description
        assert tool.parameters["type"] == "object"
        assert set(tool.parameters["required"]) <= set(tool.parameters["properties"])
        assert callable(tool.handler)
    history = next(tool for tool in tools if tool.name == "sessions_history")
    assert history.parameters["required"] == ["session_id"]
    assert history.parameters["properties"]["limit"]["type"] == "integer"


def test_openai_tools_are_function_specs_a_model_accepts(skill: Skill) -> None:
    specs = skill.openai_tools()
    assert [spec["function"]["name"] for spec in specs] == TOOL_NAMES
    for spec, tool in zip(specs, skill.tools(), strict=True):
        assert spec == {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
            },
        }
    json.dumps(specs)


def test_call_accepts_arguments_as_the_json_text_a_model_produces(skill: Skill) -> None:
    make_session(skill, "chat", 3)
    result = skill.call("sessions_history", '{"session_id": "chat", "limit": 2}')
    assert result["returned"] == 2


def test_call_reports_invalid_json_and_unknown_tools_as_errors(skill: Skill) -> None:
    assert_error(skill.call("sessions_get", "{not json"), "not valid JSON")
    assert_error(skill.call("sessions_explode", {}), "unknown tool")


def test_arguments_that_are_not_an_object_give_an_error_result(skill: Skill) -> None:
    assert_error(run(skill, "sessions_get", ["chat"]), "JSON object")


def test_an_unknown_parameter_gives_an_error_naming_the_expected_ones(skill: Skill) -> None:
    result = run(skill, "sessions_get", {"session_id": "a", "sesion": "b"})
    assert_error(result, "'sesion'", "session_id")


# --- sessions_list -------------------------------------------------------------------------


def test_sessions_list_returns_every_session_with_counts_and_rfc3339_timestamps(
    skill: Skill,
) -> None:
    assert run(skill, "sessions_list", {}) == {"sessions": [], "total": 0}
    make_session(skill, "b", 2)
    make_session(skill, "a", 0)
    result = run(skill, "sessions_list", {})
    assert result["total"] == 2
    assert [(s["id"], s["message_count"]) for s in result["sessions"]] == [("a", 0), ("b", 2)]
    stored = skill.store.get_if_exists("b")
    entry = result["sessions"][1]
    assert set(entry) == {"id", "message_count", "created_at", "updated_at"}
    assert parse_timestamp(entry["created_at"]) == stored.created_at
    assert parse_timestamp(entry["updated_at"]) == stored.updated_at


def test_sessions_list_rejects_parameters_it_does_not_take(skill: Skill) -> None:
    assert_error(run(skill, "sessions_list", {"limit": 5}), "unknown parameter")


# --- sessions_history ----------------------------------------------------------------------


def test_sessions_history_returns_the_last_limit_messages_as_role_and_content(
    skill: Skill,
) -> None:
    make_session(skill, "chat", 5)
    result = run(skill, "sessions_history", {"session_id": "chat", "limit": 2})
    assert result == {
        "session_id": "chat",
        "messages": [
            {"role": "assistant", "content": "message 3"},
            {"role": "user", "content": "message 4"},
        ],
        "total": 5,
        "returned": 2,
    }


def test_sessions_history_returns_up_to_50_messages_by_default(skill: Skill) -> None:
    make_session(skill, "long", 60)
    result = run(skill, "sessions_history", {"session_id": "long"})
    assert (result["total"], result["returned"]) == (60, 50)
    assert result["messages"][0]["content"] == "message 10"
    short = run(skill, "sessions_history", {"session_id": "long", "limit": 100})
    assert short["returned"] == 60


def test_sessions_history_shows_tool_results_and_calls_content(skill: Skill) -> None:
    session = skill.store.get("tools")
    session.add_message_with_tool_calls(
        Role.ASSISTANT, "", [ToolCall(id="c1", function=ToolFunction(name="f", arguments="{}"))]
    )
    session.add_tool_result("c1", "42")
    skill.store.save(session)
    result = run(skill, "sessions_history", {"session_id": "tools"})
    assert result["messages"] == [
        {"role": "assistant", "content": ""},
        {"role": "tool", "content": "42"},
    ]


@pytest.mark.parametrize(
    ("limit", "words"),
    [
        ("5", ["integer", "string"]),
        (0, ["at least 1"]),
        (-3, ["at least 1"]),
        (True, ["integer", "boolean"]),
        (2.5, ["integer"]),
        ([1], ["integer"]),
    ],
)
def test_sessions_history_rejects_a_limit_that_is_not_a_positive_integer(
    skill: Skill, limit: Any, words: list[str]
) -> None:
    make_session(skill, "chat", 3)
    assert_error(run(skill, "sessions_history", {"session_id": "chat", "limit": limit}), *words)


def test_sessions_history_needs_a_session_id_of_an_existing_session(skill: Skill) -> None:
    assert_error(run(skill, "sessions_history", {}), "missing required parameter 'session_id'")
    assert_error(run(skill, "sessions_history", {"session_id": 7}), "must be a string")
    assert_error(run(skill, "sessions_history", {"session_id": "nope"}), "not found", "nope")
    assert skill.store.list() == []  # looking did not create it


# --- sessions_get --------------------------------------------------------------------------


def test_sessions_get_returns_the_session_details_and_metadata(skill: Skill) -> None:
    make_session(skill, "chat", 3, agent_id="helper")
    session = skill.store.get("chat")
    session.set_metadata("tags", ["a", "b"])
    skill.store.save(session)
    result = run(skill, "sessions_get", {"session_id": "chat"})
    assert result == {
        "id": "chat",
        "agent_id": "helper",
        "message_count": 3,
        "created_at": result["created_at"],
        "updated_at": result["updated_at"],
        "metadata": {"tags": ["a", "b"]},
    }
    assert parse_timestamp(result["updated_at"]) == session.updated_at
    assert result["created_at"].endswith("Z")


def test_sessions_get_reports_a_missing_or_unknown_session(skill: Skill) -> None:
    assert_error(run(skill, "sessions_get", {}), "missing required parameter")
    assert_error(run(skill, "sessions_get", {"session_id": ""}), "must not be empty")
    assert_error(run(skill, "sessions_get", {"session_id": "ghost"}), "not found")
    assert_error(run(skill, "sessions_get", {"session_id": "x" * 300}), "longer than")


# --- sessions_clear ------------------------------------------------------------------------


def test_sessions_clear_drops_the_messages_and_keeps_the_metadata(skill: Skill) -> None:
    make_session(skill, "chat", 4)
    run(skill, "sessions_metadata_set", {"session_id": "chat", "key": "k", "value": "v"})
    result = run(skill, "sessions_clear", {"session_id": "chat"})
    assert result == {"session_id": "chat", "messages_cleared": 4, "status": "cleared"}
    stored = skill.store.get_if_exists("chat")
    assert stored.messages == [] and stored.metadata == {"k": "v"}
    again = run(skill, "sessions_clear", {"session_id": "chat"})
    assert again["messages_cleared"] == 0


def test_sessions_clear_reports_an_unknown_session_without_creating_it(skill: Skill) -> None:
    assert_error(run(skill, "sessions_clear", {"session_id": "ghost"}), "not found")
    assert_error(run(skill, "sessions_clear", {"session_id": None}), "missing required")
    assert skill.store.list() == []


# --- sessions_delete -----------------------------------------------------------------------


def test_sessions_delete_removes_the_session(skill: Skill) -> None:
    make_session(skill, "chat", 2)
    assert run(skill, "sessions_delete", {"session_id": "chat"}) == {
        "session_id": "chat",
        "status": "deleted",
    }
    assert skill.store.list() == []
    assert_error(run(skill, "sessions_get", {"session_id": "chat"}), "not found")


def test_sessions_delete_of_a_missing_session_is_not_an_error_like_store_delete(
    skill: Skill,
) -> None:
    result = run(skill, "sessions_delete", {"session_id": "never-was"})
    assert result == {"session_id": "never-was", "status": "deleted"}


def test_sessions_delete_needs_a_string_session_id(skill: Skill) -> None:
    assert_error(run(skill, "sessions_delete", {}), "missing required parameter 'session_id'")
    assert_error(run(skill, "sessions_delete", {"session_id": {"id": 1}}), "must be a string")


# --- sessions_metadata_set / get -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", 42),
        ("true", True),
        ('{"plan": "pro", "seats": [1, 2]}', {"plan": "pro", "seats": [1, 2]}),
        ('"quoted"', "quoted"),
        ("plain words", "plain words"),
        ("", ""),
    ],
)
def test_sessions_metadata_set_stores_json_when_the_value_is_json_else_the_string(
    skill: Skill, text: str, value: Any
) -> None:
    make_session(skill, "chat")
    result = run(skill, "sessions_metadata_set", {"session_id": "chat", "key": "k", "value": text})
    assert result == {"session_id": "chat", "key": "k", "status": "set"}
    assert skill.store.get_if_exists("chat").metadata == {"k": value}
    got = run(skill, "sessions_metadata_get", {"session_id": "chat", "key": "k"})
    assert got == {"session_id": "chat", "key": "k", "value": value, "exists": True}


def test_sessions_metadata_set_creates_a_missing_session_like_get(skill: Skill) -> None:
    run(skill, "sessions_metadata_set", {"session_id": "new", "key": "lang", "value": "en"})
    assert skill.store.get_if_exists("new").metadata == {"lang": "en"}


def test_sessions_metadata_set_reports_missing_or_mistyped_parameters(skill: Skill) -> None:
    assert_error(run(skill, "sessions_metadata_set", {"session_id": "s", "key": "k"}), "'value'")
    assert_error(run(skill, "sessions_metadata_set", {"session_id": "s", "value": "1"}), "'key'")
    assert_error(
        run(skill, "sessions_metadata_set", {"session_id": "s", "key": 5, "value": "1"}),
        "'key' must be a string",
    )
    assert_error(
        run(skill, "sessions_metadata_set", {"session_id": "s", "key": "", "value": "1"}),
        "must not be empty",
    )
    assert skill.store.list() == []


def test_sessions_metadata_get_says_when_a_key_does_not_exist(skill: Skill) -> None:
    make_session(skill, "chat")
    result = run(skill, "sessions_metadata_get", {"session_id": "chat", "key": "missing"})
    assert result == {"session_id": "chat", "key": "missing", "exists": False}


def test_sessions_metadata_get_reports_an_unknown_session_or_missing_key(skill: Skill) -> None:
    unknown = run(skill, "sessions_metadata_get", {"session_id": "ghost", "key": "k"})
    assert_error(unknown, "not found")
    assert_error(run(skill, "sessions_metadata_get", {"session_id": "ghost"}), "'key'")
