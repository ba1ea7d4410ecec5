"""`append` lands exactly once, even when the store retries it after losing the reply."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, make_url

from fault_workers import opened_store, run_sql
from reply_dropping_proxy import ReplyDroppingProxy, reply_dropping_proxy
from sqlsessions import InvalidInputError, Message, Role, ToolCall, ToolFunction, migrate

KINDS = ["sync", "async"]


def contents(session: Any) -> list[str]:
    return [message.content for message in session.messages]


def user(content: str) -> Message:
    return Message(role=Role.USER, content=content)


@pytest.fixture
def proxied(postgres_url: str) -> Iterator[tuple[str, ReplyDroppingProxy]]:
    """A migrated PostgreSQL database, and its URL through a reply-dropping proxy."""
    migrate(postgres_url)
    direct = make_url(postgres_url)
    with reply_dropping_proxy(direct.host or "127.0.0.1", direct.port or 5432) as proxy:
        through = direct.set(host="127.0.0.1", port=proxy.port)
        yield through.render_as_string(hide_password=False), proxy


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("tool_calls", [False, True], ids=["one-message", "with-tool-calls"])
def test_an_append_whose_reply_is_lost_after_commit_lands_exactly_once(
    proxied: tuple[str, ReplyDroppingProxy], postgres_url: str, kind: str, tool_calls: bool
) -> None:
    url, proxy = proxied
    with opened_store(url, kind) as store:
        assert store.append("log", user("first")) == 1
        lost = [user("lost-reply")]
        if tool_calls:  # several messages and a tool call in the one append call
            call = ToolCall(id="c1", function=ToolFunction(name="f", arguments="{}"))
            lost = [Message(role=Role.ASSISTANT, content="lost-reply", tool_calls=[call])]
            lost.append(Message(role=Role.TOOL, content="result", tool_call_id="c1"))
        proxy.arm(b"lost-reply")
        version = store.append("log", *lost)
        assert proxy.fired == 1  # the server committed, the client never heard back
        assert version == 2
        store.append("log", user("after"))
    with opened_store(postgres_url, "sync") as fresh:
        expected = ["first", "lost-reply", *(["result"] if tool_calls else []), "after"]
        assert contents(fresh.get_if_exists("log")) == expected
    rows = run_sql(postgres_url, "SELECT version, message_count FROM sessions WHERE id = 'log'")
    assert tuple(rows[0]) == (3, len(expected))


@pytest.mark.parametrize("kind", KINDS)
def test_an_append_creating_the_session_whose_reply_is_lost_lands_exactly_once(
    proxied: tuple[str, ReplyDroppingProxy], postgres_url: str, kind: str
) -> None:
    url, proxy = proxied
    with opened_store(url, kind) as store:
        store.list()  # connect first, so the armed packet is the append itself
        proxy.arm(b"lost-reply")
        assert store.append("new", user("lost-reply")) == 1
        assert proxy.fired == 1
        assert contents(store.get_if_exists("new")) == ["lost-reply"]


def test_a_repeated_append_with_the_same_idempotency_key_writes_nothing(open_store: Any) -> None:
    store = open_store()
    assert store.append("s", user("one"), idempotency_key="call-1") == 1
    assert store.append("s", user("two"), user("three"), idempotency_key="call-2") == 2
    # The caller's own retry of call-1 (e.g. from another process): nothing written, and
    # the session's current version comes back.
    assert store.append("s", user("one"), idempotency_key="call-1") == 2
    assert store.append("s", user("two"), user("three"), idempotency_key="call-2") == 2
    assert contents(open_store().get_if_exists("s")) == ["one", "two", "three"]
    # Keys belong to one session: the same key elsewhere is another call.
    assert store.append("other", user("one"), idempotency_key="call-1") == 1
    assert contents(open_store().get("other")) == ["one"]


def test_an_idempotency_key_of_an_expired_session_does_not_block_a_new_append(
    open_store: Any, migrated_url: str
) -> None:
    store = open_store()
    store.append("s", user("old"), idempotency_key="k")
    run_sql(migrated_url, "UPDATE sessions SET expires_at = '2000-01-01' WHERE id = 's'")
    assert store.append("s", user("new"), idempotency_key="k") == 1
    assert contents(open_store().get("s")) == ["new"]


@pytest.mark.parametrize("key", ["", "x" * 65, 42, "nul\x00"])
def test_a_bad_idempotency_key_is_rejected_naming_the_field_and_writes_nothing(
    open_store: Any, key: Any
) -> None:
    store = open_store()
    with pytest.raises(InvalidInputError) as raised:
        store.append("s", user("x"), idempotency_key=key)
    assert raised.value.field == "idempotency_key"
    assert store.list() == []


@pytest.mark.parametrize("path", ["driver", "sqlalchemy"])
def test_appends_create_advance_and_revive_a_session_and_keep_its_incarnation(
    open_store: Any, migrated_url: str, path: str
) -> None:
    store = open_store()
    if path == "sqlalchemy":  # a statement listener sends every statement through SQLAlchemy
        event.listen(store.engine, "before_cursor_execute", lambda *args: None)

    def incarnation() -> str:
        rows = run_sql(migrated_url, "SELECT incarnation FROM sessions WHERE id = 's'")
        return str(rows[0][0])

    assert store.append("s", user("creates")) == 1
    created = incarnation()
    call = ToolCall(id="c1", function=ToolFunction(name="f", arguments="{}"))
    calling = Message(role=Role.ASSISTANT, content="calls", tool_calls=[call])
    assert store.append("s", calling, Message(role=Role.TOOL, content="r", tool_call_id="c1")) == 2
    assert store.append("s", user("advances")) == 3
    assert incarnation() == created  # an advanced session keeps its own
    run_sql(migrated_url, "UPDATE sessions SET expires_at = '2000-01-01' WHERE id = 's'")
    assert store.append("s", user("revives")) == 1
    assert incarnation() != created  # an expired session is replaced by a new one
    assert contents(open_store().get("s")) == ["revives"]
