"""Scoped stores: two owners with overlapping session ids never see or touch each other's data.

Every operation runs from each scope (sync and async, every dialect) and the other owner's
session under the same id is checked unchanged and invisible; agents within an owner are a
filter; a view can only narrow its scope; closing a view leaves the root usable.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from sqlsessions import (
    ConflictError,
    InvalidInputError,
    Message,
    Role,
    Scope,
    Session,
    SessionNotFoundError,
    ToolCall,
    ToolFunction,
)

SID = "chat"


def user(text: str) -> Message:
    return Message(role=Role.USER, content=text)


def fill(store: Any, owner_word: str) -> None:
    """A session `SID` with a tool call, metadata and searchable words of its owner's."""
    session = store.get(SID)
    session.add_message(Role.USER, f"hello from {owner_word}")
    call = ToolCall(id="c1", function=ToolFunction(name="lookup", arguments="{}"))
    session.add_message_with_tool_calls(Role.ASSISTANT, "", [call])
    session.add_tool_result("c1", f"result for {owner_word}")
    session.set_metadata("owner_word", owner_word)
    store.save(session)


def snapshot(store: Any) -> Any:
    """Everything a scope can observe about `SID` (content, version, listing, archive)."""
    store.clear_cache()
    session = store.get_if_exists(SID)
    summaries = [(s.id, s.owner, s.message_count) for s in store.list_sessions().sessions]
    return (
        session.model_dump(),
        session.version,
        summaries,
        store.archived_segments(SID),
        store.list(),
    )


@pytest.fixture
def scopes(store: Any) -> tuple[Any, Any, Any]:
    """(root, alice, bob): alice and bob each hold a session `SID`; the root holds none."""
    alice, bob = store.scoped("alice"), store.scoped("bob")
    fill(alice, "alpaca")
    fill(bob, "bison")
    return store, alice, bob


def test_two_owners_hold_their_own_session_under_the_same_id(scopes: Any) -> None:
    root, alice, bob = scopes
    a, b = alice.get_if_exists(SID), bob.get_if_exists(SID)
    assert (a.owner, b.owner) == ("alice", "bob")
    assert a.messages[0].content == "hello from alpaca"
    assert b.messages[0].content == "hello from bison"
    assert a.metadata == {"owner_word": "alpaca"} and b.metadata == {"owner_word": "bison"}
    assert [m.content for m in alice.history(SID)][-1] == "result for alpaca"
    assert [m.content for m in bob.last_messages(SID, 1)] == ["result for bison"]
    assert alice.list() == [SID] and bob.list() == [SID]
    assert [(s.id, s.owner) for s in alice.list_sessions().sessions] == [(SID, "alice")]
    # The root store works in the default owner '': it holds no session at all.
    with pytest.raises(SessionNotFoundError):
        root.get_if_exists(SID)
    assert root.list() == [] and root.list_sessions().sessions == []
    assert root.scope == Scope() and alice.scope == Scope("alice")


def test_every_read_of_a_session_only_another_owner_holds_finds_nothing(scopes: Any) -> None:
    root, alice, _bob = scopes
    carol = root.scoped("carol")
    before = snapshot(alice)
    with pytest.raises(SessionNotFoundError):
        carol.get_if_exists(SID)
    with pytest.raises(SessionNotFoundError):
        carol.history(SID)
    assert carol.last_messages(SID) == []
    assert carol.list() == []
    assert carol.list_sessions().sessions == []
    assert carol.list_sessions(metadata={"owner_word": "alpaca"}).sessions == []
    assert carol.search("alpaca").hits == []
    assert carol.archived_segments(SID) == []
    with pytest.raises(SessionNotFoundError):
        carol.touch(SID)
    assert snapshot(alice) == before


def test_every_write_from_another_scope_leaves_the_owners_session_unchanged(scopes: Any) -> None:
    root, alice, _bob = scopes
    carol = root.scoped("carol")
    before = snapshot(alice)
    assert carol.pop(SID) is None
    assert carol.clear(SID) == 0
    carol.delete(SID)  # absent: a no-op
    with pytest.raises(SessionNotFoundError):
        carol.fork(SID, "copy")
    with pytest.raises(SessionNotFoundError):
        carol.replace_history(SID, [user("summary")])
    with pytest.raises(SessionNotFoundError):
        carol.restore_history(SID, 1)
    assert snapshot(alice) == before
    # get-or-create and append make carol's own session under the same id.
    created = carol.get(SID)
    assert (created.owner, created.messages) == ("carol", [])
    carol.append(SID, user("carol was here"))
    session = carol.get(SID)
    session.add_message(Role.ASSISTANT, "saved by carol")
    session.set_metadata("owner_word", "cat")
    carol.save(session)
    assert carol.pop(SID) == Message(role=Role.ASSISTANT, content="saved by carol")
    assert carol.replace_history(SID, [user("compacted")]).archived_segment == 1
    carol.touch(SID)
    assert carol.clear(SID) == 1
    carol.delete(SID)
    assert snapshot(alice) == before
    assert carol.list() == []


def test_operations_in_a_scope_act_on_its_own_session_only(scopes: Any) -> None:
    _root, alice, bob = scopes
    bob_before = snapshot(bob)
    alice.append(SID, user("more alpaca"))
    assert alice.pop(SID) == user("more alpaca")
    assert alice.fork(SID, "copy") == 3
    assert alice.get_if_exists("copy").owner == "alice"
    with pytest.raises(SessionNotFoundError):
        bob.get_if_exists("copy")
    result = alice.replace_history(SID, [user("summary of alpaca")])
    assert alice.archived_history(SID, result.archived_segment)[0].content == "hello from alpaca"
    assert bob.archived_segments(SID) == []
    assert {h.session_id for h in alice.search("alpaca").hits} == {SID, "copy"}
    assert bob.search("alpaca").hits == []
    assert alice.clear(SID) == 1
    alice.delete(SID)
    alice.delete("copy")
    assert snapshot(bob) == bob_before


def test_search_in_a_scope_finds_only_the_owners_messages(scopes: Any) -> None:
    _root, alice, bob = scopes
    assert {h.session_id for h in alice.search("hello").hits} == {SID}
    assert [h.snippet for h in alice.search("hello").hits] == ["<mark>hello</mark> from alpaca"]
    assert [h.snippet for h in bob.search("hello").hits] == ["<mark>hello</mark> from bison"]
    assert alice.search("bison").hits == []


def test_a_session_of_another_owner_cannot_be_saved_into_a_scope(scopes: Any) -> None:
    _root, alice, bob = scopes
    before = snapshot(bob)
    stolen = alice.get(SID)
    stolen.add_message(Role.USER, "overwrite?")
    with pytest.raises(InvalidInputError) as raised:
        bob.save(stolen)
    assert raised.value.field == "owner"
    fresh = Session.new(SID)  # owner '' saved into bob's scope
    with pytest.raises(InvalidInputError, match="owner"):
        bob.save(fresh)
    assert snapshot(bob) == before
    # Relabelling a loaded session does not move it either: nothing of bob's is written.
    stolen.owner = "bob"
    with pytest.raises(ConflictError):
        bob.save(stolen)
    assert snapshot(bob) == before


def test_a_new_session_saved_in_a_scope_carries_the_owner(store: Any) -> None:
    dave = store.scoped("dave")
    dave.save(Session.new("fresh", owner="dave"))
    assert dave.get_if_exists("fresh").owner == "dave"
    with pytest.raises(SessionNotFoundError):
        store.get_if_exists("fresh")


# --- agents within an owner --------------------------------------------------------------------


def test_an_agent_scope_sees_only_its_agents_sessions_of_the_owner(store: Any) -> None:
    acme = store.scoped("acme")
    planner, writer = acme.scoped(agent_id="planner"), acme.scoped(agent_id="writer")
    planner.append("plan", user("step one"))
    assert planner.get_if_exists("plan").agent_id == "planner"
    writer.get("draft")
    assert acme.list() == ["draft", "plan"]
    assert [s.agent_id for s in acme.list_sessions().sessions] == ["writer", "planner"]
    assert writer.list() == ["draft"] and planner.list() == ["plan"]
    with pytest.raises(SessionNotFoundError):
        writer.get_if_exists("plan")
    with pytest.raises(SessionNotFoundError):
        writer.history("plan")
    assert writer.last_messages("plan") == []
    assert writer.pop("plan") is None and writer.clear("plan") == 0
    assert writer.search("step").hits == []
    assert writer.list_sessions(agent_id="planner").sessions == []
    with pytest.raises(SessionNotFoundError):
        writer.touch("plan")
    writer.delete("plan")  # another agent's session: absent, a no-op
    assert [m.content for m in planner.get_if_exists("plan").messages] == ["step one"]


def test_agents_of_one_owner_share_its_id_space_and_taking_anothers_id_conflicts(
    store: Any,
) -> None:
    acme = store.scoped("acme")
    planner, writer = acme.scoped(agent_id="planner"), acme.scoped(agent_id="writer")
    planner.append("plan", user("step one"))
    with pytest.raises(ConflictError, match="another agent"):
        writer.get("plan")
    with pytest.raises(ConflictError, match="another agent"):
        writer.append("plan", user("mine now"))
    with pytest.raises(ConflictError, match="another agent"):
        writer.save(Session.new("plan", agent_id="writer", owner="acme"))
    assert [m.content for m in planner.get_if_exists("plan").messages] == ["step one"]
    # Another owner's agent of the same name is another scope altogether.
    other = store.scoped("globex", agent_id="writer")
    assert other.get("plan").messages == []


def test_saving_a_session_of_another_agent_in_an_agent_scope_is_refused(store: Any) -> None:
    planner = store.scoped("acme", agent_id="planner")
    with pytest.raises(InvalidInputError) as raised:
        planner.save(Session.new("x", agent_id="writer", owner="acme"))
    assert raised.value.field == "agent_id"
    session = planner.get("x")
    session.agent_id = "writer"
    with pytest.raises(InvalidInputError, match="agent_id"):
        planner.save(session)
    assert store.scoped("acme").get_if_exists("x").agent_id == "planner"


# --- making views ------------------------------------------------------------------------------


def test_a_view_can_only_narrow_its_scope(store: Any) -> None:
    alice = store.scoped("alice")
    assert alice.scoped().scope == Scope("alice")
    assert alice.scoped("alice", agent_id="a").scope == Scope("alice", "a")
    with pytest.raises(InvalidInputError) as raised:
        alice.scoped("bob")
    assert raised.value.field == "owner"
    with pytest.raises(InvalidInputError, match="owner"):
        store.scoped("").scoped("bob")
    agent = alice.scoped(agent_id="a")
    assert agent.scoped().scope == Scope("alice", "a")
    with pytest.raises(InvalidInputError) as raised:
        agent.scoped(agent_id="b")
    assert raised.value.field == "agent_id"
    assert store.scoped("bob", agent_id="b").scope == Scope("bob", "b")


@pytest.mark.parametrize(
    ("owner", "agent_id", "field"),
    [
        (5, None, "owner"),
        ("x" * 256, None, "owner"),
        ("bad\x00owner", None, "owner"),
        ("ok", "", "agent_id"),
        ("ok", 7, "agent_id"),
    ],
)
def test_a_bad_owner_or_agent_is_refused_naming_the_field(
    store: Any, owner: Any, agent_id: Any, field: str
) -> None:
    with pytest.raises(InvalidInputError) as raised:
        store.scoped(owner, agent_id=agent_id)
    assert raised.value.field == field


def test_a_bad_owner_on_a_session_is_refused_and_nothing_is_written(store: Any) -> None:
    with pytest.raises(InvalidInputError) as raised:
        Session(id="s", owner="x" * 300)
    assert raised.value.field == "owner"
    session = Session.new("s")
    session.owner = "bad\x00"
    with pytest.raises(InvalidInputError, match="owner"):
        store.save(session)
    assert store.list() == []


def test_closing_a_view_leaves_the_root_store_usable(store: Any) -> None:
    view = store.scoped("alice")
    view.append(SID, user("hi"))
    view.close()
    store.append(SID, user("root"))
    assert [m.content for m in store.get_if_exists(SID).messages] == ["root"]
    assert [m.content for m in store.scoped("alice").get_if_exists(SID).messages] == ["hi"]


def test_each_view_has_its_own_cache(store: Any) -> None:
    alice, bob = store.scoped("alice"), store.scoped("bob")
    alice.append(SID, user("a"))
    bob.append(SID, user("b"))
    for _ in range(2):  # the second round is served from each view's cache
        assert [m.content for m in alice.get(SID).messages] == ["a"]
        assert [m.content for m in bob.get(SID).messages] == ["b"]


def test_the_reaper_removes_an_expired_session_but_not_another_owners_under_the_same_id(
    open_store: Any,
) -> None:
    short = open_store(ttl=timedelta(milliseconds=1))
    forever = open_store(ttl=None)
    short.scoped("alice").append(SID, user("soon gone"))
    forever.scoped("bob").append(SID, user("stays"))
    time.sleep(0.05)
    assert forever.reap_expired() == 1
    assert [m.content for m in forever.scoped("bob").get_if_exists(SID).messages] == ["stays"]
    with pytest.raises(SessionNotFoundError):
        forever.scoped("alice").get_if_exists(SID)


# --- the JSON form -----------------------------------------------------------------------------


def test_the_owner_travels_in_the_go_json_form_and_is_omitted_when_empty() -> None:
    plain = Session.new("s")
    assert "owner" not in plain.to_json()
    owned = Session.new("s", owner="alice")
    assert '"owner":"alice"' in owned.to_json()
    loaded = Session.from_json(owned.to_json())
    assert loaded.owner == "alice" and loaded == owned
    go_document = '{"id":"s","messages":[],"created_at":"2026-01-01T00:00:00Z"}'
    assert Session.from_json(go_document).owner == ""
    assert Session.model_validate({"id": "s", "owner": None}).owner == ""


def test_a_session_summary_reads_the_scopes_own_session_and_no_other(scopes: Any) -> None:
    root, alice, bob = scopes
    summary = alice.session_summary(SID)
    assert (summary.id, summary.owner, summary.message_count) == (SID, "alice", 3)
    assert summary.updated_at == alice.get_if_exists(SID).updated_at
    bob.append(SID, user("one more"))
    assert bob.session_summary(SID).message_count == 4
    assert alice.session_summary(SID).message_count == 3
    for absent in (root.scoped("carol"), root):
        with pytest.raises(SessionNotFoundError):
            absent.session_summary(SID)
    with pytest.raises(InvalidInputError, match="session_id"):
        alice.session_summary("")


def test_only_a_store_built_from_a_url_is_a_root_store(store: Any) -> None:
    assert store.is_root
    assert not store.scoped("alice").is_root
    assert not store.scoped("alice").scoped(agent_id="bot").is_root
    assert not store.scoped("").is_root  # a view of the default owner is still a view
