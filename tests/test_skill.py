"""The sessions Skill: each tool through its handler, valid and invalid, on both dialects,
on a `Store` (call) and on an `AsyncStore` (acall)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from skill_harness import SkillHarness, assert_error, harness, skill_kind  # noqa: F401
from sqlsessions import (
    DEFAULT_SESSION_TTL,
    AsyncStore,
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
Run = Callable[[str, Any], dict[str, Any]]


@pytest.fixture
def skill(harness: SkillHarness) -> Skill:  # noqa: F811
    """A skill with every tool allowed, on a Store or an AsyncStore."""
    return harness.skill()


@pytest.fixture
def run(harness: SkillHarness, skill: Skill) -> Run:  # noqa: F811
    """Run a tool of `skill` the way an agent framework would."""
    return lambda name, arguments: harness.call(skill, name, arguments)


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
    assert_error(Skill().call("sessions_list", {}), "set_storage")


def test_set_storage_with_a_url_builds_a_store_with_the_default_ttl(migrated_url: str) -> None:
    with Skill(migrated_url) as skill:
        skill.init()
        assert isinstance(skill.store, Store)
        assert skill.store.config.ttl == DEFAULT_SESSION_TTL


def test_set_storage_accepts_an_existing_store_and_close_leaves_it_open(migrated_url: str) -> None:
    with Store(StoreConfig(url=migrated_url)) as store:
        skill = Skill()
        skill.set_storage(store)
        skill.init()
        result = skill.call("sessions_metadata_set", {"session_id": "a", "key": "k", "value": "1"})
        assert result["status"] == "set"
        skill.close()
        assert store.get_if_exists("a").metadata == {"k": 1}


def test_a_skill_takes_an_async_store_and_its_tools_run_with_acall(migrated_url: str) -> None:
    import asyncio

    async def scenario() -> dict[str, Any]:
        async with AsyncStore(StoreConfig(url=migrated_url)) as store, Skill(store) as skill:
            skill.init()
            await skill.acall(
                "sessions_metadata_set", {"session_id": "a", "key": "k", "value": "1"}
            )
            assert_error(skill.call("sessions_get", {"session_id": "a"}), "AsyncStore", "acall")
            return await skill.acall("sessions_get", '{"session_id": "a"}')

    assert asyncio.run(scenario())["metadata"] == {"k": 1}


def test_acall_on_a_skill_with_a_sync_store_says_to_use_call(migrated_url: str) -> None:
    import asyncio

    with Skill(migrated_url) as skill:
        result = asyncio.run(skill.acall("sessions_list", {}))
    assert_error(result, "Store", "skill.call")


def test_set_storage_rejects_something_that_is_not_storage() -> None:
    with pytest.raises(SqlSessionsError, match="Store"):
        Skill().set_storage(42)  # type: ignore[arg-type]


def test_tools_are_the_seven_session_tools_with_json_schemas(skill: Skill) -> None:
    tools = skill.tools()
    assert [tool.name for tool in tools] == TOOL_NAMES
    for tool in tools:
        assert tool.description
        assert tool.parameters["type"] == "object"
        assert tool.parameters["additionalProperties"] is False
        assert set(tool.parameters["required"]) <= set(tool.parameters["properties"])
        assert callable(tool.handler) and callable(tool.async_handler)
    history = next(tool for tool in tools if tool.name == "sessions_history")
    assert history.parameters["required"] == ["session_id"]
    assert history.parameters["properties"]["limit"]["type"] == "integer"
    assert history.parameters["properties"]["session_id"]["maxLength"] == 255


def test_call_accepts_arguments_as_the_json_text_a_model_produces(
    harness: SkillHarness,  # noqa: F811
    run: Run,
) -> None:
    harness.make_session("chat", 3)
    result = run("sessions_history", '{"session_id": "chat", "limit": 2}')
    assert result["returned"] == 2


def test_call_reports_invalid_json_and_unknown_tools_as_errors(run: Run) -> None:
    assert_error(run("sessions_get", "{not json"), "not valid JSON")
    assert_error(run("sessions_explode", {}), "unknown tool")


def test_arguments_that_are_not_an_object_give_an_error_result(run: Run) -> None:
    assert_error(run("sessions_get", ["chat"]), "JSON object")
    assert_error(run("sessions_get", "[1, 2]"), "JSON object")


def test_an_unknown_parameter_gives_an_error_naming_the_expected_ones(run: Run) -> None:
    result = run("sessions_get", {"session_id": "a", "sesion": "b"})
    assert_error(result, "'sesion'", "session_id")


# --- sessions_list -------------------------------------------------------------------------


def test_sessions_list_returns_sessions_newest_first_with_counts_and_rfc3339_timestamps(
    harness: SkillHarness,  # noqa: F811
    run: Run,
) -> None:
    assert run("sessions_list", {}) == {"sessions": [], "total": 0, "next_cursor": None}
    harness.make_session("b", 2)
    harness.make_session("a", 0)
    result = run("sessions_list", {})
    assert result["total"] == 2 and result["next_cursor"] is None
    assert [(s["id"], s["message_count"]) for s in result["sessions"]] == [("a", 0), ("b", 2)]
    stored = harness.store.get_if_exists("b")
    entry = result["sessions"][1]
    assert set(entry) == {"id", "message_count", "created_at", "updated_at"}
    assert parse_timestamp(entry["created_at"]) == stored.created_at
    assert parse_timestamp(entry["updated_at"]) == stored.updated_at


def test_sessions_list_pages_with_limit_and_cursor_until_every_session_was_seen(
    harness: SkillHarness,  # noqa: F811
    run: Run,
) -> None:
    for i in range(5):
        harness.make_session(f"s{i}")
    seen: list[str] = []
    page = run("sessions_list", {"limit": 2})
    while True:
        assert page["total"] == len(page["sessions"]) <= 2
        seen += [entry["id"] for entry in page["sessions"]]
        if page["next_cursor"] is None:
            break
        page = run("sessions_list", {"limit": 2, "cursor": page["next_cursor"]})
    assert seen == ["s4", "s3", "s2", "s1", "s0"]


def test_sessions_list_clamps_a_huge_limit_and_says_so(
    harness: SkillHarness,  # noqa: F811
    run: Run,
) -> None:
    harness.make_session("a")
    result = run("sessions_list", {"limit": 10**12})
    assert result["limit"] == 100 and "maximum of 100" in result["note"]
    assert [entry["id"] for entry in result["sessions"]] == ["a"]


def test_sessions_list_rejects_a_cursor_it_did_not_make(run: Run) -> None:
    assert_error(run("sessions_list", {"cursor": "not-a-cursor"}), "cursor")
    assert_error(run("sessions_list", {"cursor": 3}), "'cursor' must be a string")


# --- sessions_history ----------------------------------------------------------------------


def test_sessions_history_returns_the_last_limit_messages_oldest_first(
    harness: SkillHarness,  # noqa: F811
    run: Run,
) -> None:
    harness.make_session("chat", 5)
    result = run("sessions_history", {"session_id": "chat", "limit": 2})
    assert result == {
        "session_id": "chat",
        "messages": [
            {"role": "assistant", "content": "message 3"},
            {"role": "user", "content": "message 4"},
        ],
        "total": 5,
        "returned": 2,
    }


def test_sessions_history_returns_up_to_50_messages_by_default(
    harness: SkillHarness,  # noqa: F811
    run: Run,
) -> None:
    harness.make_session("long", 60)
    result = run("sessions_history", {"session_id": "long"})
    assert (result["returned"], result["total"]) == (50, 60)
    assert result["messages"][0]["content"] == "message 10"
    assert run("sessions_history", {"session_id": "long", "limit": 100})["returned"] == 60


def test_sessions_history_clamps_a_huge_limit_to_500_and_says_so(
    harness: SkillHarness,  # noqa: F811
    run: Run,
) -> None:
    harness.make_session("long", 510)
    result = run("sessions_history", {"session_id": "long", "limit": 10**30})
    assert (result["returned"], result["limit"]) == (500, 500)
    assert "maximum of 500" in result["note"]
    assert result["messages"][0]["content"] == "message 10"


def test_sessions_history_shows_tool_calls_and_which_call_a_result_answers(
    harness: SkillHarness,  # noqa: F811
    run: Run,
) -> None:
    session = harness.store.get("tools")
    session.add_message(Role.USER, "what is 6*7?")
    session.add_message_with_tool_calls(
        Role.ASSISTANT,
        "",
        [ToolCall(id="c1", function=ToolFunction(name="calc", arguments='{"x": "6*7"}'))],
    )
    session.add_tool_result("c1", "42")
    harness.store.save(session)
    result = run("sessions_history", {"session_id": "tools"})
    assert result["messages"] == [
        {"role": "user", "content": "what is 6*7?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "c1", "name": "calc", "arguments": '{"x": "6*7"}'}],
        },
        {"role": "tool", "content": "42", "tool_call_id": "c1"},
    ]


def test_sessions_history_never_opens_on_a_tool_result_without_its_call(
    harness: SkillHarness,  # noqa: F811
    run: Run,
) -> None:
    session = harness.store.get("tools")
    session.add_message_with_tool_calls(
        Role.ASSISTANT,
        "",
        [
            ToolCall(id="c1", function=ToolFunction(name="f", arguments="{}")),
            ToolCall(id="c2", function=ToolFunction(name="g", arguments="{}")),
        ],
    )
    session.add_tool_result("c1", "one")
    session.add_tool_result("c2", "two")
    harness.store.save(session)
    result = run("sessions_history", {"session_id": "tools", "limit": 1})
    assert [m["role"] for m in result["messages"]] == ["assistant", "tool", "tool"]
    assert result["returned"] == 3


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
    harness: SkillHarness,  # noqa: F811
    run: Run,
    limit: Any,
    words: list[str],
) -> None:
    harness.make_session("chat", 3)
    assert_error(run("sessions_history", {"session_id": "chat", "limit": limit}), *words)


def test_sessions_history_needs_a_session_id_of_an_existing_session(
    harness: SkillHarness,  # noqa: F811
    run: Run,
) -> None:
    assert_error(run("sessions_history", {}), "missing required parameter 'session_id'")
    assert_error(run("sessions_history", {"session_id": 7}), "must be a string")
    assert_error(run("sessions_history", {"session_id": "nope"}), "not found", "nope")
    assert harness.store.list() == []  # looking did not create it


# --- sessions_get --------------------------------------------------------------------------


def test_sessions_get_returns_the_session_details_and_metadata(
    harness: SkillHarness,  # noqa: F811
    run: Run,
) -> None:
    harness.make_session("chat", 3, agent_id="helper")
    session = harness.store.get("chat")
    session.set_metadata("tags", ["a", "b"])
    harness.store.save(session)
    result = run("sessions_get", {"session_id": "chat"})
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


def test_sessions_get_reports_a_missing_or_unknown_session(run: Run) -> None:
    assert_error(run("sessions_get", {}), "missing required parameter")
    assert_error(run("sessions_get", {"session_id": ""}), "must not be empty")
    assert_error(run("sessions_get", {"session_id": "ghost"}), "not found")
    assert_error(run("sessions_get", {"session_id": "x" * 300}), "longer than 255")


# --- sessions_clear ------------------------------------------------------------------------


def test_sessions_clear_drops_the_messages_and_keeps_the_metadata(
    harness: SkillHarness,  # noqa: F811
    run: Run,
) -> None:
    harness.make_session("chat", 4)
    run("sessions_metadata_set", {"session_id": "chat", "key": "k", "value": "v"})
    result = run("sessions_clear", {"session_id": "chat"})
    assert result == {"session_id": "chat", "messages_cleared": 4, "status": "cleared"}
    harness.store.clear_cache()
    stored = harness.store.get_if_exists("chat")
    assert stored.messages == [] and stored.metadata == {"k": "v"}
    again = run("sessions_clear", {"session_id": "chat"})
    assert again["messages_cleared"] == 0


def test_sessions_clear_reports_an_unknown_session_without_creating_it(
    harness: SkillHarness,  # noqa: F811
    run: Run,
) -> None:
    assert_error(run("sessions_clear", {"session_id": "ghost"}), "not found")
    assert_error(run("sessions_clear", {"session_id": None}), "missing required")
    assert harness.store.list() == []


# --- sessions_delete -----------------------------------------------------------------------


def test_sessions_delete_removes_the_session(
    harness: SkillHarness,  # noqa: F811
    run: Run,
) -> None:
    harness.make_session("chat", 2)
    assert run("sessions_delete", {"session_id": "chat"}) == {
        "session_id": "chat",
        "status": "deleted",
    }
    assert harness.store.list() == []
    assert_error(run("sessions_get", {"session_id": "chat"}), "not found")


def test_sessions_delete_of_a_missing_session_is_not_an_error_like_store_delete(
    run: Run,
) -> None:
    result = run("sessions_delete", {"session_id": "never-was"})
    assert result == {"session_id": "never-was", "status": "deleted"}


def test_sessions_delete_needs_a_string_session_id(run: Run) -> None:
    assert_error(run("sessions_delete", {}), "missing required parameter 'session_id'")
    assert_error(run("sessions_delete", {"session_id": {"id": 1}}), "must be a string")


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
    harness: SkillHarness,  # noqa: F811
    run: Run,
    text: str,
    value: Any,
) -> None:
    harness.make_session("chat")
    result = run("sessions_metadata_set", {"session_id": "chat", "key": "k", "value": text})
    assert result == {"session_id": "chat", "key": "k", "status": "set"}
    harness.store.clear_cache()
    assert harness.store.get_if_exists("chat").metadata == {"k": value}
    got = run("sessions_metadata_get", {"session_id": "chat", "key": "k"})
    assert got == {"session_id": "chat", "key": "k", "value": value, "exists": True}


def test_sessions_metadata_set_creates_a_missing_session_like_get(
    harness: SkillHarness,  # noqa: F811
    run: Run,
) -> None:
    run("sessions_metadata_set", {"session_id": "new", "key": "lang", "value": "en"})
    assert harness.store.get_if_exists("new").metadata == {"lang": "en"}


def test_sessions_metadata_set_reports_missing_or_mistyped_parameters(
    harness: SkillHarness,  # noqa: F811
    run: Run,
) -> None:
    assert_error(run("sessions_metadata_set", {"session_id": "s", "key": "k"}), "'value'")
    assert_error(run("sessions_metadata_set", {"session_id": "s", "value": "1"}), "'key'")
    assert_error(
        run("sessions_metadata_set", {"session_id": "s", "key": 5, "value": "1"}),
        "'key' must be a string",
    )
    assert_error(
        run("sessions_metadata_set", {"session_id": "s", "key": "", "value": "1"}),
        "must not be empty",
    )
    assert harness.store.list() == []


def test_sessions_metadata_get_says_when_a_key_does_not_exist(
    harness: SkillHarness,  # noqa: F811
    run: Run,
) -> None:
    harness.make_session("chat")
    result = run("sessions_metadata_get", {"session_id": "chat", "key": "missing"})
    assert result == {"session_id": "chat", "key": "missing", "exists": False}


def test_sessions_metadata_get_reports_an_unknown_session_or_missing_key(run: Run) -> None:
    assert_error(run("sessions_metadata_get", {"session_id": "ghost", "key": "k"}), "not found")
    assert_error(run("sessions_metadata_get", {"session_id": "ghost"}), "'key'")


def test_set_storage_with_an_async_engine_builds_an_async_store_on_it(migrated_url: str) -> None:
    import asyncio

    async def scenario() -> dict[str, Any]:
        async with AsyncStore(StoreConfig(url=migrated_url)) as owner_of_the_engine:
            skill = Skill(owner_of_the_engine.engine)
            assert isinstance(skill.store, AsyncStore)
            assert skill.store.engine is owner_of_the_engine.engine
            await skill.acall(
                "sessions_metadata_set", {"session_id": "a", "key": "k", "value": "2"}
            )
            skill.close()  # the engine stays usable: it is the caller's
            return (await owner_of_the_engine.get_if_exists("a")).metadata

    assert asyncio.run(scenario()) == {"k": 2}


def test_metadata_set_retries_when_another_writer_saved_first_and_keeps_both_changes(
    migrated_url: str,
) -> None:
    import asyncio

    from sqlsessions import Session

    config = StoreConfig(url=migrated_url)

    def another_writer_saves(session_id: str) -> None:
        with Store(config) as other:
            theirs = other.get(session_id)
            theirs.set_metadata("theirs", 1)
            other.save(theirs)

    class RacedStore(Store):
        """A store whose first save loses a race against another writer."""

        raced = False

        def save(self, session: Session) -> None:
            if not self.raced:
                self.raced = True
                another_writer_saves(session.id)
            super().save(session)

    class RacedAsyncStore(AsyncStore):
        raced = False

        async def save(self, session: Session) -> None:
            if not self.raced:
                self.raced = True
                another_writer_saves(session.id)
            await super().save(session)

    arguments = {"session_id": "raced", "key": "mine", "value": "2"}
    with RacedStore(config) as store:
        assert Skill(store).call("sessions_metadata_set", arguments)["status"] == "set"
        assert store.raced
        with Store(config) as fresh:
            assert fresh.get_if_exists("raced").metadata == {"theirs": 1, "mine": 2}

    async def scenario() -> dict[str, Any]:
        async with RacedAsyncStore(config) as store:
            result = await Skill(store).acall("sessions_metadata_set", {**arguments, "value": "3"})
            assert store.raced
            return result

    assert asyncio.run(scenario())["status"] == "set"
    with Store(config) as fresh:
        assert fresh.get_if_exists("raced").metadata == {"theirs": 1, "mine": 3}
