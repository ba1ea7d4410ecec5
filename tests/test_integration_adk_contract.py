"""ADK's BaseSessionService contract, point by point, on sqlsessions (both dialects)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from google.adk.errors import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError as AdkNotFound
from google.adk.events.event import Event
from google.adk.sessions.base_session_service import GetSessionConfig
from google.genai import types

from adk_agent import event, texts
from sqlsessions import AsyncStore, Store
from sqlsessions.integrations.adk import SqlSessionService

pytestmark = pytest.mark.frameworks

T = TypeVar("T")
APP = "contract-app"


def run(url: str, body: Callable[[SqlSessionService], Awaitable[T]]) -> T:
    async def main() -> T:
        async with SqlSessionService.from_url(url) as service:
            return await body(service)

    return asyncio.run(main())


def test_create_session_keeps_a_given_id_and_generates_one_otherwise(migrated_url: str) -> None:
    async def body(service: SqlSessionService) -> None:
        given = await service.create_session(app_name=APP, user_id="u", session_id="chat-1")
        generated = await service.create_session(app_name=APP, user_id="u", state={"k": "v"})
        assert given.id == "chat-1" and generated.id and generated.id != "chat-1"
        assert (given.app_name, given.user_id, given.events, given.state) == (APP, "u", [], {})
        found = await service.get_session(app_name=APP, user_id="u", session_id=generated.id)
        assert found is not None and found.state == {"k": "v"}
        assert found.last_update_time == pytest.approx(generated.last_update_time)

    run(migrated_url, body)


def test_creating_an_existing_session_id_fails_and_changes_nothing(migrated_url: str) -> None:
    async def body(service: SqlSessionService) -> None:
        await service.create_session(app_name=APP, user_id="u", session_id="s", state={"k": 1})
        with pytest.raises(AlreadyExistsError):
            await service.create_session(
                app_name=APP, user_id="u", session_id="s", state={"k": 2, "app:a": 1}
            )
        found = await service.get_session(app_name=APP, user_id="u", session_id="s")
        assert found is not None and found.state == {"k": 1}

    run(migrated_url, body)


def test_get_session_returns_none_for_an_unknown_session(migrated_url: str) -> None:
    async def body(service: SqlSessionService) -> None:
        await service.create_session(app_name=APP, user_id="u", session_id="s")
        assert await service.get_session(app_name=APP, user_id="u", session_id="nope") is None
        assert await service.get_session(app_name=APP, user_id="other", session_id="s") is None
        assert await service.get_session(app_name="other", user_id="u", session_id="s") is None

    run(migrated_url, body)


def test_num_recent_events_returns_the_latest_events_in_order(migrated_url: str) -> None:
    async def body(service: SqlSessionService) -> list[list[str]]:
        session = await service.create_session(app_name=APP, user_id="u", session_id="s")
        for i in range(5):
            await service.append_event(session, event(f"e{i}"))
        found = []
        for n in (None, 0, 2, 9):
            config = GetSessionConfig(num_recent_events=n)
            got = await service.get_session(
                app_name=APP, user_id="u", session_id="s", config=config
            )
            found.append(texts(got))
        return found

    every, none, last_two, more_than_all = run(migrated_url, body)
    assert every == more_than_all == [f"e{i}" for i in range(5)]
    assert none == [] and last_two == ["e3", "e4"]


def test_num_recent_events_holds_whole_events_that_span_many_rows(migrated_url: str) -> None:
    # Each event answers 6 function calls: 6 stored rows (the first carries the event), more
    # than the first window of rows read for the last 3 events.
    def answers(i: int) -> Event:
        parts = [
            types.Part(
                function_response=types.FunctionResponse(
                    id=f"c{i}-{k}", name="f", response={"k": k}
                )
            )
            for k in range(6)
        ]
        return Event(
            id=f"ev{i}",
            author="agent",
            invocation_id="inv",
            content=types.Content(role="user", parts=parts),
        )

    async def body(service: SqlSessionService) -> list[list[str]]:
        session = await service.create_session(app_name=APP, user_id="u", session_id="s")
        for i in range(8):
            await service.append_event(session, answers(i))
        kw = {"app_name": APP, "user_id": "u", "session_id": "s"}
        found = []
        for n in (1, 3, 8):
            got = await service.get_session(**kw, config=GetSessionConfig(num_recent_events=n))
            assert got is not None
            assert all(len(e.content.parts) == 6 for e in got.events)
            found.append([e.id for e in got.events])
        return found

    one, three, eight = run(migrated_url, body)
    assert one == ["ev7"] and three == ["ev5", "ev6", "ev7"]
    assert eight == [f"ev{i}" for i in range(8)]


def test_after_timestamp_returns_the_events_from_that_time_on(migrated_url: str) -> None:
    async def body(service: SqlSessionService) -> tuple[list[str], list[str]]:
        session = await service.create_session(app_name=APP, user_id="u", session_id="s")
        for i in range(5):
            await service.append_event(session, event(f"e{i}", ts=1000.0 + i))
        after = GetSessionConfig(after_timestamp=1002.0)
        both = GetSessionConfig(after_timestamp=1001.0, num_recent_events=2)
        kw = {"app_name": APP, "user_id": "u", "session_id": "s"}
        return (
            texts(await service.get_session(**kw, config=after)),
            texts(await service.get_session(**kw, config=both)),
        )

    after, both = run(migrated_url, body)
    assert after == ["e2", "e3", "e4"] and both == ["e3", "e4"]


def test_list_sessions_lists_sessions_oldest_update_first_with_state_and_no_events(
    migrated_url: str,
) -> None:
    async def body(service: SqlSessionService) -> None:
        a = await service.create_session(app_name=APP, user_id="u", session_id="a", state={"x": 1})
        await service.create_session(app_name=APP, user_id="u", session_id="b")
        await service.create_session(app_name=APP, user_id="v", session_id="c")
        await service.create_session(app_name="other-app", user_id="u", session_id="d")
        await service.append_event(a, event("hi", delta={"app:color": "red"}))  # a newest

        mine = (await service.list_sessions(app_name=APP, user_id="u")).sessions
        assert [s.id for s in mine] == ["b", "a"]
        assert all(s.events == [] for s in mine)
        assert mine[1].state == {"x": 1, "app:color": "red"}
        assert mine[0].last_update_time <= mine[1].last_update_time

        everyone = (await service.list_sessions(app_name=APP)).sessions
        assert sorted((s.user_id, s.id) for s in everyone) == [("u", "a"), ("u", "b"), ("v", "c")]
        assert (await service.list_sessions(app_name=APP, user_id="nobody")).sessions == []

    run(migrated_url, body)


def test_delete_session_removes_it_and_a_missing_one_is_not_an_error(migrated_url: str) -> None:
    async def body(service: SqlSessionService) -> None:
        session = await service.create_session(app_name=APP, user_id="u", session_id="s")
        await service.append_event(session, event("hi"))
        await service.delete_session(app_name=APP, user_id="u", session_id="s")
        assert await service.get_session(app_name=APP, user_id="u", session_id="s") is None
        await service.delete_session(app_name=APP, user_id="u", session_id="s")
        with pytest.raises(AdkNotFound):
            await service.append_event(session, event("after delete"))

    run(migrated_url, body)


def test_app_and_user_state_is_shared_across_sessions(migrated_url: str) -> None:
    async def body(service: SqlSessionService) -> None:
        first = await service.create_session(
            app_name=APP, user_id="u", state={"app:mode": "beta", "user:name": "Ann"}
        )
        await service.append_event(first, event("x", delta={"user:visits": 1, "own": True}))
        second = await service.create_session(app_name=APP, user_id="u")
        assert second.state == {"app:mode": "beta", "user:name": "Ann", "user:visits": 1}
        other_user = await service.create_session(app_name=APP, user_id="w")
        assert other_user.state == {"app:mode": "beta"}
        other_app = await service.create_session(app_name="elsewhere", user_id="u")
        assert other_app.state == {}
        assert await service.get_user_state(app_name=APP, user_id="u") == {
            "name": "Ann",
            "visits": 1,
        }
        again = await service.get_session(app_name=APP, user_id="u", session_id=first.id)
        assert again is not None
        assert again.state == {
            "app:mode": "beta",
            "user:name": "Ann",
            "user:visits": 1,
            "own": True,
        }

    run(migrated_url, body)


def test_temp_state_is_never_persisted(migrated_url: str) -> None:
    async def body(service: SqlSessionService) -> None:
        session = await service.create_session(
            app_name=APP, user_id="u", session_id="s", state={"temp:seed": 1}
        )
        await service.append_event(session, event("x", delta={"temp:scratch": 2, "kept": 3}))
        assert session.state["temp:scratch"] == 2  # visible for the rest of the invocation
        found = await service.get_session(app_name=APP, user_id="u", session_id="s")
        assert found is not None
        assert found.state == {"kept": 3}
        assert found.events[0].actions.state_delta == {"kept": 3}

    run(migrated_url, body)
    with Store.from_url(migrated_url) as store:
        stored = store.scoped("u").get_if_exists("s")
        assert not [key for key in stored.metadata if "temp:" in key]
        assert "temp:" not in str([m.item for m in stored.messages])


def test_an_append_through_a_stale_session_object_fails_and_writes_nothing(
    migrated_url: str,
) -> None:
    async def body(service: SqlSessionService) -> None:
        await service.create_session(app_name=APP, user_id="u", session_id="s")
        kw = {"app_name": APP, "user_id": "u", "session_id": "s"}
        first = await service.get_session(**kw)
        second = await service.get_session(**kw)
        assert first is not None and second is not None
        await service.append_event(first, event("from first"))
        with pytest.raises(StaleSessionError):
            await service.append_event(second, event("from stale", delta={"app:x": 1}))
        found = await service.get_session(**kw)
        assert found is not None and texts(found) == ["from first"]
        assert "app:x" not in found.state
        # A copy this service did not hand out (unbound) is checked the way ADK does.
        old = found.model_copy(update={"events": list(found.events)})
        await service.append_event(found, event("after reload"))  # a reloaded copy appends
        with pytest.raises(StaleSessionError):
            await service.append_event(old, event("from copy"))

    run(migrated_url, body)


def test_the_same_ids_under_other_users_or_apps_never_collide(migrated_url: str) -> None:
    async def body(service: SqlSessionService) -> None:
        # Every (user, app) pair differs: one user's ids are shared by its apps (see
        # test_integration_adk_owners.py), so no user appears in two apps here.
        owners = [("a/b", "c"), ("a", "b/c"), ("a:b", "c/"), ("a", "b%2Fc"), ("a/b", "")]
        for app, user in owners:
            session = await service.create_session(app_name=app, user_id=user, session_id="s/1")
            await service.append_event(session, event(f"{app}|{user}"))
        for app, user in owners:
            found = await service.get_session(app_name=app, user_id=user, session_id="s/1")
            assert found is not None and texts(found) == [f"{app}|{user}"]

    run(migrated_url, body)


def test_a_session_read_with_a_recent_events_window_appends_unless_it_is_stale(
    migrated_url: str,
) -> None:
    async def body(service: SqlSessionService) -> None:
        session = await service.create_session(app_name=APP, user_id="u", session_id="s")
        for i in range(3):
            await service.append_event(session, event(f"e{i}"))
        kw = {"app_name": APP, "user_id": "u", "session_id": "s"}
        window = GetSessionConfig(num_recent_events=1)
        fresh = await service.get_session(**kw, config=window)
        stale = await service.get_session(**kw, config=window)
        assert fresh is not None and stale is not None and texts(fresh) == ["e2"]
        await service.append_event(fresh, event("e3"))
        with pytest.raises(StaleSessionError):
            await service.append_event(stale, event("lost"))
        assert texts(await service.get_session(**kw)) == ["e0", "e1", "e2", "e3"]

    run(migrated_url, body)


def test_state_that_is_not_json_is_refused_by_name_and_nothing_is_written(
    migrated_url: str,
) -> None:
    from sqlsessions import InvalidInputError

    async def body(service: SqlSessionService) -> None:
        with pytest.raises(InvalidInputError) as caught:
            await service.create_session(
                app_name=APP, user_id="u", session_id="s", state={"ok": 1, "app:bad": {1, 2}}
            )
        assert caught.value.field == "state[app:bad]"
        assert await service.get_session(app_name=APP, user_id="u", session_id="s") is None
        session = await service.create_session(app_name=APP, user_id="u", session_id="s")
        with pytest.raises(InvalidInputError):
            await service.append_event(session, event("x", delta={"user:bad": float("nan")}))
        found = await service.get_session(app_name=APP, user_id="u", session_id="s")
        assert found is not None and found.events == [] and found.state == {}
        assert await service.get_user_state(app_name=APP, user_id="u") == {}

    run(migrated_url, body)


def test_an_append_retried_after_a_failed_write_lands_exactly_once(migrated_url: str) -> None:
    from sqlsessions import StorageError

    async def body(service: SqlSessionService) -> None:
        session = await service.create_session(app_name=APP, user_id="u", session_id="s")
        await service.append_event(session, event("first"))
        real_save = AsyncStore.save

        async def connection_lost(store: AsyncStore, stored: Any) -> None:
            raise StorageError("database error: connection lost")

        # Every store's save (the service saves through the user's view of its store).
        AsyncStore.save = connection_lost  # type: ignore[method-assign]
        retried = event("retried")
        try:
            with pytest.raises(StorageError):
                await service.append_event(session, retried)
        finally:
            AsyncStore.save = real_save  # type: ignore[method-assign]
        await service.append_event(session, retried)
        found = await service.get_session(app_name=APP, user_id="u", session_id="s")
        assert texts(found) == ["first", "retried"]
        assert texts(session) == ["first", "retried"]

    run(migrated_url, body)
