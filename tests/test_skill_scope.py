"""A scoped Skill acts only in its store's scope: another owner's (or agent's) session is
"session not found", byte for byte what a session that never existed gives, for every
tool, and nothing outside the scope is read, listed, changed or deleted."""

from __future__ import annotations

import json
from typing import Any

import pytest

from skill_harness import SkillHarness, assert_error, harness, skill_kind  # noqa: F401
from sqlsessions import InvalidInputError, Role, Skill, Store

OWNERS = ("acme", "globex")
SESSION_TOOLS = [
    "sessions_history",
    "sessions_get",
    "sessions_clear",
    "sessions_delete",
    "sessions_metadata_get",
]


def arrange(store: Store) -> None:
    """Both owners have a session "shared" (same id, different content) and one of their own;
    acme's are split between two agents."""
    for owner in OWNERS:
        view = store.scoped(owner)
        for session_id, agent in (("shared", "bot1"), (f"{owner}-only", "bot2")):
            session = view.get(session_id)
            session.agent_id = agent
            session.add_message(Role.USER, f"{owner} says hi in {session_id}")
            session.set_metadata("secret", f"{owner}'s")
            view.save(session)


def snapshot(store: Store, owner: str) -> dict[str, str]:
    """Everything `owner` has, as Go JSON by id."""
    view = store.scoped(owner)
    return {sid: view.get_if_exists(sid).to_json() for sid in sorted(view.list())}


def arguments_for(tool: str, session_id: str) -> dict[str, Any]:
    if tool.startswith("sessions_metadata"):
        value = {"value": "1"} if tool == "sessions_metadata_set" else {}
        return {"session_id": session_id, "key": "secret", **value}
    return {"session_id": session_id}


@pytest.fixture(params=["owner=", "scoped store"])
def acme_skill(request: pytest.FixtureRequest, harness: SkillHarness) -> Skill:  # noqa: F811
    """A skill with every tool, limited to owner acme: by `Skill(store, owner=...)` or by
    handing it a scoped store."""
    arrange(harness.store)
    if request.param == "owner=":
        return harness.skill(owner="acme")
    return Skill(harness.open_store().scoped("acme"), allow=Skill.ALL_TOOLS)


def test_a_scoped_skill_lists_only_its_owners_sessions(
    harness: SkillHarness,  # noqa: F811
    acme_skill: Skill,
) -> None:
    listed = harness.call(acme_skill, "sessions_list", {})
    assert sorted(entry["id"] for entry in listed["sessions"]) == ["acme-only", "shared"]
    assert harness.call(harness.skill(), "sessions_list", {})["sessions"] == []  # owner ''


@pytest.mark.parametrize("tool", SESSION_TOOLS)
def test_another_owners_session_is_exactly_a_missing_session(
    harness: SkillHarness,  # noqa: F811
    acme_skill: Skill,
    tool: str,
) -> None:
    before = snapshot(harness.store, "globex")
    other = harness.call(acme_skill, tool, arguments_for(tool, "globex-only"))
    assert snapshot(harness.store, "globex") == before  # untouched
    assert snapshot(harness.store, "acme").keys() == {"acme-only", "shared"}
    harness.store.scoped("globex").delete("globex-only")  # now it truly does not exist
    missing = harness.call(acme_skill, tool, arguments_for(tool, "globex-only"))
    assert json.dumps(other) == json.dumps(missing)


@pytest.mark.parametrize("tool", SESSION_TOOLS)
def test_a_shared_id_reaches_only_the_scopes_own_session(
    harness: SkillHarness,  # noqa: F811
    acme_skill: Skill,
    tool: str,
) -> None:
    globex = snapshot(harness.store, "globex")
    result = harness.call(acme_skill, tool, arguments_for(tool, "shared"))
    assert "error" not in result, result
    assert "globex" not in json.dumps(result)
    assert snapshot(harness.store, "globex") == globex


def test_history_and_get_of_a_shared_id_show_the_scopes_own_content(
    harness: SkillHarness,  # noqa: F811
    acme_skill: Skill,
) -> None:
    history = harness.call(acme_skill, "sessions_history", {"session_id": "shared"})
    assert history["messages"] == [{"role": "user", "content": "acme says hi in shared"}]
    got = harness.call(acme_skill, "sessions_get", {"session_id": "shared"})
    assert got["metadata"] == {"secret": "acme's"}


def test_metadata_set_on_another_owners_id_makes_the_scopes_own_session(
    harness: SkillHarness,  # noqa: F811
    acme_skill: Skill,
) -> None:
    globex = snapshot(harness.store, "globex")
    arguments = {"session_id": "globex-only", "key": "secret", "value": '"mine"'}
    assert harness.call(acme_skill, "sessions_metadata_set", arguments)["status"] == "set"
    assert snapshot(harness.store, "globex") == globex
    mine = harness.store.scoped("acme").get_if_exists("globex-only")
    assert (mine.owner, mine.messages, mine.metadata) == ("acme", [], {"secret": "mine"})


def test_hostile_ids_reach_nothing_outside_the_scope(
    harness: SkillHarness,  # noqa: F811
    acme_skill: Skill,
) -> None:
    globex = snapshot(harness.store, "globex")
    acme = snapshot(harness.store, "acme")
    for session_id in ("%", "_", "*", "' OR 1=1 --", "globex%", "%-only", "shared' --"):
        for tool in SESSION_TOOLS:
            result = harness.call(acme_skill, tool, arguments_for(tool, session_id))
            if tool == "sessions_delete":
                assert result == {"session_id": session_id, "status": "deleted"}
            else:
                assert result == {"error": f"{tool}: session not found: {session_id!r}"}
    for limit in (10**9, -1, "all"):
        harness.call(acme_skill, "sessions_list", {"limit": limit})
        harness.call(acme_skill, "sessions_history", {"session_id": "shared", "limit": limit})
    extra = {"session_id": "globex-only", "owner": "globex"}
    assert_error(harness.call(acme_skill, "sessions_get", extra), "unknown parameter 'owner'")
    assert snapshot(harness.store, "globex") == globex
    assert snapshot(harness.store, "acme") == acme


def test_an_agent_scoped_skill_sees_only_that_agents_sessions(
    harness: SkillHarness,  # noqa: F811
) -> None:
    arrange(harness.store)
    skill = harness.skill(owner="acme", agent_id="bot1")
    listed = harness.call(skill, "sessions_list", {})
    assert [entry["id"] for entry in listed["sessions"]] == ["shared"]
    other_agent = harness.call(skill, "sessions_get", {"session_id": "acme-only"})
    assert other_agent == {"error": "sessions_get: session not found: 'acme-only'"}
    assert harness.call(skill, "sessions_delete", {"session_id": "acme-only"})["status"] == (
        "deleted"
    )
    assert "acme-only" in snapshot(harness.store, "acme")  # another agent's: a no-op
    arguments = {"session_id": "new", "key": "k", "value": "1"}
    assert harness.call(skill, "sessions_metadata_set", arguments)["status"] == "set"
    created = harness.store.scoped("acme").get_if_exists("new")
    assert (created.owner, created.agent_id) == ("acme", "bot1")


def test_tool_descriptions_and_schemas_name_the_scope() -> None:
    skill = Skill(allow=Skill.ALL_TOOLS, owner="acme", agent_id="bot1")
    scope = 'the sessions of agent "bot1" of owner "acme"'
    for tool in skill.tools():
        text = json.dumps(tool.description)[1:-1] + json.dumps(tool.parameters)
        assert scope.replace('"', '\\"') in text, tool.name
    history = next(tool for tool in skill.tools() if tool.name == "sessions_history")
    assert "any other session id is reported as not found" in history.description
    assert skill.anthropic_tools()[1]["input_schema"]["properties"]["session_id"][
        "description"
    ] == (f"The id of one of {scope}.")
    owner_only = Skill(owner="globex").mcp_tools()[0]["description"]
    assert 'the sessions of owner "globex"' in owner_only


def test_the_scope_in_the_descriptions_is_the_stores_scope(migrated_url: str) -> None:
    with Store.from_url(migrated_url) as store:
        skill = Skill(store.scoped("acme", agent_id="bot1"))
        assert 'agent "bot1" of owner "acme"' in skill.tools()[0].description
        assert skill.store.scope.owner == "acme"


def test_a_skill_cannot_widen_a_scoped_store(migrated_url: str) -> None:
    with Store.from_url(migrated_url) as store:
        with pytest.raises(InvalidInputError) as raised:
            Skill(store.scoped("acme"), owner="globex")
        assert raised.value.field == "owner"
        narrowed = Skill(store.scoped("acme"), agent_id="bot1")
        assert (narrowed.store.scope.owner, narrowed.store.scope.agent_id) == ("acme", "bot1")


def test_closing_a_scoped_skill_leaves_the_callers_store_open(migrated_url: str) -> None:
    with Store.from_url(migrated_url) as store:
        with Skill(store, owner="acme") as skill:
            skill.call("sessions_metadata_set", {"session_id": "a", "key": "k", "value": "1"})
        assert store.scoped("acme").get_if_exists("a").metadata == {"k": 1}
        assert store.list() == []


@pytest.mark.parametrize(
    ("options", "field"),
    [({"owner": 7}, "owner"), ({"owner": "a\x00"}, "owner"), ({"agent_id": ""}, "agent_id")],
)
def test_a_bad_owner_or_agent_is_invalid_input_naming_it(
    options: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInputError) as raised:
        Skill(**options)
    assert raised.value.field == field
