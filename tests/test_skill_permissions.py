"""Which tools a Skill lets a model use: read tools and metadata_set by default, the
destructive ones only when allowed; a tool not allowed is neither listed nor run."""

from __future__ import annotations

from typing import Any

import pytest

from skill_harness import SkillHarness, assert_error, harness, skill_kind  # noqa: F401
from sqlsessions import InvalidInputError, Skill

DEFAULT_NAMES = [
    "sessions_list",
    "sessions_history",
    "sessions_get",
    "sessions_metadata_set",
    "sessions_metadata_get",
]


def names(skill: Skill) -> list[str]:
    return [tool.name for tool in skill.tools()]


def test_by_default_a_skill_offers_the_read_tools_and_metadata_set_only() -> None:
    skill = Skill()
    assert skill.allowed == Skill.DEFAULT_TOOLS
    assert Skill.READ_TOOLS | {"sessions_metadata_set"} == Skill.DEFAULT_TOOLS
    assert not Skill.DEFAULT_TOOLS & Skill.DESTRUCTIVE_TOOLS
    assert names(skill) == DEFAULT_NAMES
    for listing in (skill.openai_tools(), skill.anthropic_tools(), skill.mcp_tools()):
        text = repr(listing)
        assert "sessions_clear" not in text and "sessions_delete" not in text


def test_allow_names_exactly_the_tools_offered_in_the_go_order() -> None:
    assert names(Skill(allow=Skill.ALL_TOOLS)) == [
        "sessions_list",
        "sessions_history",
        "sessions_get",
        "sessions_clear",
        "sessions_delete",
        "sessions_metadata_set",
        "sessions_metadata_get",
    ]
    assert names(Skill(allow=Skill.READ_TOOLS)) == [
        "sessions_list",
        "sessions_history",
        "sessions_get",
        "sessions_metadata_get",
    ]
    assert names(Skill(allow=["sessions_delete", "sessions_get"])) == [
        "sessions_get",
        "sessions_delete",
    ]
    assert names(Skill(allow=set())) == []


@pytest.mark.parametrize(
    "allow",
    [{"sessions_list", "sessions_drop"}, ["sessions_*"], "sessions_list", 42, [None]],
)
def test_allow_with_an_unknown_tool_or_not_a_collection_of_names_is_invalid_input(
    allow: Any,
) -> None:
    with pytest.raises(InvalidInputError) as raised:
        Skill(allow=allow)
    assert raised.value.field == "allow"


@pytest.mark.parametrize("tool", ["sessions_clear", "sessions_delete"])
def test_a_destructive_tool_not_allowed_returns_not_permitted_and_changes_nothing(
    harness: SkillHarness,  # noqa: F811
    tool: str,
) -> None:
    harness.make_session("chat", 3)
    before = harness.snapshot()
    skill = harness.skill(allow=None)
    result = harness.call(skill, tool, {"session_id": "chat"})
    assert result == {"error": f"{tool}: tool not permitted"}
    assert harness.snapshot() == before


def test_a_read_only_skill_cannot_set_metadata(harness: SkillHarness) -> None:  # noqa: F811
    skill = harness.skill(allow=Skill.READ_TOOLS)
    arguments = {"session_id": "new", "key": "k", "value": "1"}
    assert_error(harness.call(skill, "sessions_metadata_set", arguments), "not permitted")
    assert harness.store.list() == []


def test_a_tool_not_permitted_is_refused_before_its_arguments_are_looked_at(
    harness: SkillHarness,  # noqa: F811
) -> None:
    skill = harness.skill(allow=Skill.READ_TOOLS)
    result = harness.call(skill, "sessions_delete", "{not json")
    assert result == {"error": "sessions_delete: tool not permitted"}


def test_an_unknown_tool_lists_only_the_permitted_ones(harness: SkillHarness) -> None:  # noqa: F811
    skill = harness.skill(allow=Skill.READ_TOOLS)
    result = harness.call(skill, "sessions_purge", {})
    assert_error(result, "unknown tool 'sessions_purge'", "sessions_list")
    assert "sessions_delete" not in result["error"]
    assert "metadata_set" not in result["error"]


def test_allowed_destructive_tools_run(harness: SkillHarness) -> None:  # noqa: F811
    harness.make_session("chat", 2)
    skill = harness.skill(allow=Skill.DEFAULT_TOOLS | {"sessions_clear", "sessions_delete"})
    assert harness.call(skill, "sessions_clear", {"session_id": "chat"})["messages_cleared"] == 2
    assert harness.call(skill, "sessions_delete", {"session_id": "chat"})["status"] == "deleted"
    assert harness.store.list() == []
