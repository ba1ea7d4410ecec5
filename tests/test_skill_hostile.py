"""A hostile model against the Skill: look-alike and wildcard ids, SQL in ids, absurd
limits, missing, extra and wrongly typed arguments, huge values. Every call gets an error
result or an answer about exactly the session it named, and nothing else changes."""

from __future__ import annotations

from typing import Any

import pytest

from skill_harness import SkillHarness, assert_error, harness, skill_kind  # noqa: F401
from sqlsessions import Skill

HOSTILE_IDS = ["%", "*", "_", "' OR 1=1 --", "alpha%", "alph_", "a*", '"; DROP TABLE sessions; --']
"""Ids that look like patterns or SQL; none of them exists."""
LIMITS = [10**40, -1, 0, 2.5, "50", "1; DROP TABLE messages", None, True, [], {}]
FORGED_CURSORS = [
    "%",
    "' OR 1=1 --",
    "x" * 5000,
    "eyJhIjogMX0",  # {"a": 1}
    "WyIyMDI2IiwgIiUiXQ",  # ["2026", "%"]
    7,
    ["a"],
    {"a": 1},
]
READ_TOOLS = ["sessions_history", "sessions_get", "sessions_metadata_get", "sessions_clear"]


def seed(harness: SkillHarness) -> dict[str, str]:  # noqa: F811
    """Sessions whose ids the hostile ones could match if they were patterns."""
    for session_id, n in (("alpha", 3), ("alpha_1", 2), ("alphaX", 1), ("beta", 4)):
        harness.make_session(session_id, n)
        session = harness.store.get(session_id)
        session.set_metadata("secret", f"of {session_id}")
        harness.store.save(session)
    return harness.snapshot()


def arguments_for(tool: str, session_id: Any) -> dict[str, Any]:
    if tool in ("sessions_metadata_get", "sessions_metadata_set"):
        extra = {"value": "v"} if tool == "sessions_metadata_set" else {}
        return {"session_id": session_id, "key": "secret", **extra}
    return {"session_id": session_id}


@pytest.mark.parametrize("tool", READ_TOOLS)
def test_ids_that_look_like_patterns_or_sql_are_just_missing_sessions(
    harness: SkillHarness,  # noqa: F811
    tool: str,
) -> None:
    before = seed(harness)
    skill = harness.skill()
    for session_id in HOSTILE_IDS:
        result = harness.call(skill, tool, arguments_for(tool, session_id))
        assert result == {"error": f"{tool}: session not found: {session_id!r}"}
    assert harness.snapshot() == before


def test_deleting_pattern_like_ids_deletes_nothing_else(harness: SkillHarness) -> None:  # noqa: F811
    before = seed(harness)
    skill = harness.skill()
    for session_id in HOSTILE_IDS:
        result = harness.call(skill, "sessions_delete", {"session_id": session_id})
        assert result == {"session_id": session_id, "status": "deleted"}
    assert harness.snapshot() == before


def test_a_session_named_like_a_pattern_is_matched_literally(
    harness: SkillHarness,  # noqa: F811
) -> None:
    before = seed(harness)
    skill = harness.skill()
    for session_id in ("alpha%", "_", "' OR 1=1 --"):
        result = harness.call(
            skill, "sessions_metadata_set", {"session_id": session_id, "key": "k", "value": "1"}
        )
        assert result["status"] == "set"
        got = harness.call(skill, "sessions_get", {"session_id": session_id})
        assert (got["id"], got["message_count"], got["metadata"]) == (session_id, 0, {"k": 1})
        cleared = harness.call(skill, "sessions_clear", {"session_id": session_id})
        assert cleared["messages_cleared"] == 0
        harness.call(skill, "sessions_delete", {"session_id": session_id})
    assert harness.snapshot() == before


def test_absurd_history_limits_are_errors_or_clamped_never_more(
    harness: SkillHarness,  # noqa: F811
) -> None:
    before = seed(harness)
    skill = harness.skill()
    for limit in LIMITS:
        result = harness.call(skill, "sessions_history", {"session_id": "beta", "limit": limit})
        if limit is None:  # as if not given: the default
            assert result["returned"] == 4
        elif limit == 10**40:
            assert (result["returned"], result["limit"]) == (4, 500)
        else:
            assert_error(result, "'limit'")
    assert harness.snapshot() == before


def test_absurd_list_limits_are_errors_or_clamped_never_more(
    harness: SkillHarness,  # noqa: F811
) -> None:
    before = seed(harness)
    skill = harness.skill()
    for limit in LIMITS:
        result = harness.call(skill, "sessions_list", {"limit": limit})
        if limit is None or limit == 10**40:
            assert sorted(entry["id"] for entry in result["sessions"]) == sorted(before)
        else:
            assert_error(result, "'limit'")
    assert harness.snapshot() == before


def test_forged_list_cursors_are_errors(harness: SkillHarness) -> None:  # noqa: F811
    before = seed(harness)
    skill = harness.skill()
    for cursor in FORGED_CURSORS:
        assert_error(harness.call(skill, "sessions_list", {"cursor": cursor}), "cursor")
    assert harness.snapshot() == before


BAD_SESSION_IDS: dict[str, Any] = {
    "a number": 1,
    "an array": ["alpha"],
    "an object": {"$ne": None},
    "too long": "a" * 256,
    "with NUL": "alpha\x00",
    "a boolean": True,
    "empty": "",
}


@pytest.mark.parametrize("tool", [*READ_TOOLS, "sessions_delete", "sessions_metadata_set"])
def test_missing_extra_and_mistyped_arguments_are_errors_and_change_nothing(
    harness: SkillHarness,  # noqa: F811
    tool: str,
) -> None:
    before = seed(harness)
    skill = harness.skill()
    missing = arguments_for(tool, "alpha")
    del missing["session_id"]
    assert_error(harness.call(skill, tool, missing), tool, "missing required parameter")
    extra = {**arguments_for(tool, "alpha"), "owner": "someone-else"}
    assert_error(harness.call(skill, tool, extra), tool, "unknown parameter 'owner'")
    for what, session_id in BAD_SESSION_IDS.items():
        result = harness.call(skill, tool, arguments_for(tool, session_id))
        assert set(result) == {"error"}, (what, result)
        assert "session_id" in result["error"], (what, result)
    assert harness.snapshot() == before


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("k", "x" * 65_537, ["'value'", "longer than 65536"]),
        ("k", {"nested": "x" * 70_000}, ["'value'", "longer than 65536"]),
        ("k", "[" * 200 + "]" * 200, ["nested"]),
        ("k" * 256, "v", ["'key'", "longer than 255"]),
        ("", "v", ["'key'", "must not be empty"]),
        ("k\x00", "v", ["key"]),
        ("k", "NaN", ["NaN"]),
        ("k", 5, None),
        ("k", ["a", 1], None),
    ],
)
def test_huge_or_invalid_metadata_values_are_errors_and_create_nothing(
    harness: SkillHarness,  # noqa: F811
    key: Any,
    value: Any,
    words: list[str] | None,
) -> None:
    before = seed(harness)
    skill = harness.skill()
    result = harness.call(
        skill, "sessions_metadata_set", {"session_id": "fresh", "key": key, "value": value}
    )
    if words is None:  # a JSON value given directly is taken as is
        assert result["status"] == "set"
        assert harness.store.get_if_exists("fresh").metadata == {key: value}
        harness.store.delete("fresh")
    else:
        assert_error(result, *words)
    assert harness.snapshot() == before


def test_a_value_at_the_size_limit_is_stored(harness: SkillHarness) -> None:  # noqa: F811
    skill = harness.skill()
    value = "x" * 65_536
    result = harness.call(
        skill, "sessions_metadata_set", {"session_id": "big", "key": "k", "value": value}
    )
    assert result["status"] == "set"
    assert harness.store.get_if_exists("big").metadata == {"k": value}


def test_arguments_that_are_not_one_json_object_are_errors(
    harness: SkillHarness,  # noqa: F811
) -> None:
    before = seed(harness)
    skill = harness.skill(allow=Skill.ALL_TOOLS)
    for arguments in ("", "null", "[]", '"alpha"', "42", "{", "{}" * 3, "[" * 100_000):
        for tool in ("sessions_get", "sessions_delete", "sessions_clear", "sessions_metadata_set"):
            assert set(harness.call(skill, tool, arguments)) == {"error"}, (tool, arguments)
    assert harness.snapshot() == before


def test_tool_names_that_are_not_a_tool_are_errors(harness: SkillHarness) -> None:  # noqa: F811
    before = seed(harness)
    skill = harness.skill()
    for name in (None, 42, ["sessions_get"], "SESSIONS_GET", "sessions_get ", ""):
        result = harness.call(skill, name, {"session_id": "alpha"})
        assert_error(result, "unknown tool")
    assert harness.snapshot() == before
