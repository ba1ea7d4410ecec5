"""ADK's (app_name, user_id, session_id) is the session `session_id` of owner `user_id` and
agent `app_name` (both dialects): users are isolated by the store's owners."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.input_validation_error import InputValidationError
from google.adk.errors.session_not_found_error import SessionNotFoundError as AdkNotFound
from google.adk.sessions.base_session_service import GetSessionConfig

from adk_agent import event, texts
from app_role import application_role
from sqlsessions import (
    AsyncStore,
    InvalidInputError,
    SessionNotFoundError,
    StoreConfig,
    migrate,
)
from sqlsessions.integrations.adk import SqlSessionService
from sqlsessions.row_security import enable_row_security

pytestmark = pytest.mark.frameworks

T = TypeVar("T")
APP, OTHER_APP = "owners-app", "owners-other-app"


def run(url: str, body: Callable[[SqlSessionService, AsyncStore], Awaitable[T]]) -> T:
    """`body` with a service on a root store and that root store."""

    async def main() -> T:
        store = AsyncStore(StoreConfig(url=url, ttl=None))
        try:
            return await body(SqlSessionService(store), store)
        finally:
            await store.close()

    return asyncio.run(main())


def test_an_adk_session_is_the_users_session_of_the_app_under_adks_own_id(
    migrated_url: str,
) -> None:
    async def body(service: SqlSessionService, store: AsyncStore) -> None:
        session = await service.create_session(
            app_name=APP, user_id="alice", session_id="chat", state={"topic": "rain"}
        )
        await service.append_event(session, event("hello"))

        stored = await store.scoped("alice").get_if_exists("chat")
        assert (stored.owner, stored.agent_id, stored.id) == ("alice", APP, "chat")
        assert [m.content for m in stored.messages] == ["hello"]
        assert stored.metadata["state:topic"] == "rain"
        assert await store.scoped("alice", agent_id=APP).list() == ["chat"]
        with pytest.raises(SessionNotFoundError):
            await store.get_if_exists("chat")  # not in the default owner
        assert "chat" not in await store.list()

    run(migrated_url, body)


def test_two_users_with_the_same_session_id_never_see_each_others_events_or_state(
    migrated_url: str,
) -> None:
    async def body(service: SqlSessionService, store: AsyncStore) -> None:
        for user in ("alice", "bob"):
            session = await service.create_session(
                app_name=APP, user_id=user, session_id="s", state={"who": user}
            )
            await service.append_event(session, event(f"{user} 1", {"user:name": user}))
            await service.append_event(session, event(f"{user} 2", {"last": user}))

        recent = GetSessionConfig(num_recent_events=1)
        for user in ("alice", "bob"):
            found = await service.get_session(app_name=APP, user_id=user, session_id="s")
            assert found is not None and texts(found) == [f"{user} 1", f"{user} 2"]
            assert found.state == {"who": user, "last": user, "user:name": user}
            window = await service.get_session(
                app_name=APP, user_id=user, session_id="s", config=recent
            )
            assert window is not None and texts(window) == [f"{user} 2"]
            assert window.state == found.state
            assert await service.get_user_state(app_name=APP, user_id=user) == {"name": user}

        await service.delete_session(app_name=APP, user_id="bob", session_id="s")
        assert await service.get_session(app_name=APP, user_id="bob", session_id="s") is None
        kept = await service.get_session(app_name=APP, user_id="alice", session_id="s")
        assert kept is not None and texts(kept) == ["alice 1", "alice 2"]

    run(migrated_url, body)


def test_user_state_is_per_user_and_app_and_app_state_is_shared_by_every_user(
    migrated_url: str,
) -> None:
    async def body(service: SqlSessionService, store: AsyncStore) -> None:
        writes = [
            (APP, "alice", {"user:x": "alice in app", "app:y": "app y"}),
            (APP, "bob", {"user:x": "bob in app"}),
            (OTHER_APP, "alice", {"user:x": "alice in other app"}),
        ]
        for app, user, state in writes:
            await service.create_session(app_name=app, user_id=user, session_id=f"{app}-s")

            session = await service.get_session(app_name=app, user_id=user, session_id=f"{app}-s")
            assert session is not None
            await service.append_event(session, event("set", state))

        bob = await service.get_session(app_name=APP, user_id="bob", session_id=f"{APP}-s")
        assert bob is not None and bob.state == {"user:x": "bob in app", "app:y": "app y"}
        other = await service.get_session(
            app_name=OTHER_APP, user_id="alice", session_id=f"{OTHER_APP}-s"
        )
        assert other is not None and other.state == {"user:x": "alice in other app"}
        assert await service.get_app_state(app_name=APP) == {"y": "app y"}
        assert await service.get_app_state(app_name=OTHER_APP) == {}

        # Where it lives: user state in the user's owner, app state in the default owner.
        user_state = await store.scoped("alice").get_if_exists(f"adk-user-state:{APP}")
        assert (user_state.agent_id, user_state.metadata["state:x"]) == (APP, "alice in app")
        app_state = await store.get_if_exists(f"adk-app-state:{APP}")
        assert (app_state.owner, app_state.agent_id) == ("", APP)
        assert app_state.metadata["state:y"] == "app y"

    run(migrated_url, body)


def test_list_sessions_lists_every_users_sessions_of_the_app_or_one_users(
    migrated_url: str,
) -> None:
    async def body(service: SqlSessionService, store: AsyncStore) -> None:
        for app, user, session_id in [
            (APP, "alice", "a1"),
            (APP, "bob", "b1"),
            (APP, "alice", "a2"),
            (APP, "", "default-user"),
            (OTHER_APP, "carol", "c1"),
        ]:
            await service.create_session(
                app_name=app, user_id=user, session_id=session_id, state={"user:u": user or "-"}
            )
        # A session of the app's agent that ADK did not make is not an ADK session.
        await store.scoped("alice", agent_id=APP).append("plain", {"role": "user", "content": "x"})

        every = await service.list_sessions(app_name=APP)
        assert [(s.user_id, s.id) for s in every.sessions] == [
            ("alice", "a1"),
            ("bob", "b1"),
            ("alice", "a2"),
            ("", "default-user"),
        ]
        assert [s.state for s in every.sessions][:2] == [{"user:u": "alice"}, {"user:u": "bob"}]
        alice = await service.list_sessions(app_name=APP, user_id="alice")
        assert [(s.user_id, s.id) for s in alice.sessions] == [("alice", "a1"), ("alice", "a2")]
        assert (await service.list_sessions(app_name=APP, user_id="carol")).sessions == []
        assert await service.get_session(app_name=APP, user_id="alice", session_id="plain") is None

    run(migrated_url, body)


def test_one_user_cannot_use_one_session_id_in_two_apps(migrated_url: str) -> None:
    async def body(service: SqlSessionService, store: AsyncStore) -> None:
        first = await service.create_session(app_name=APP, user_id="alice", session_id="s")
        await service.append_event(first, event("first app"))
        with pytest.raises(AlreadyExistsError):
            await service.create_session(app_name=OTHER_APP, user_id="alice", session_id="s")
        assert (
            await service.get_session(app_name=OTHER_APP, user_id="alice", session_id="s") is None
        )
        kept = await service.get_session(app_name=APP, user_id="alice", session_id="s")
        assert kept is not None and texts(kept) == ["first app"]
        # Another user may use the id in the other app.
        await service.create_session(app_name=OTHER_APP, user_id="bob", session_id="s")

    run(migrated_url, body)


def test_state_session_ids_are_reserved_and_never_read_as_adk_sessions(
    migrated_url: str,
) -> None:
    async def body(service: SqlSessionService, store: AsyncStore) -> None:
        await service.create_session(
            app_name=APP, user_id="alice", session_id="s", state={"user:k": 1, "app:k": 2}
        )
        for reserved in (f"adk-user-state:{APP}", f"adk-app-state:{APP}"):
            with pytest.raises(InvalidInputError) as caught:
                await service.create_session(app_name=APP, user_id="alice", session_id=reserved)
            assert caught.value.field == "session_id"
            for user in ("alice", ""):
                kw = {"app_name": APP, "user_id": user, "session_id": reserved}
                assert await service.get_session(**kw) is None
                window = GetSessionConfig(num_recent_events=1)
                assert await service.get_session(**kw, config=window) is None
                await service.delete_session(**kw)
        assert await service.get_user_state(app_name=APP, user_id="alice") == {"k": 1}
        assert await service.get_app_state(app_name=APP) == {"k": 2}

    run(migrated_url, body)


def test_a_service_on_a_store_scoped_to_a_user_serves_that_user_only(migrated_url: str) -> None:
    async def body(root_service: SqlSessionService, store: AsyncStore) -> None:
        bob_session = await root_service.create_session(
            app_name=APP, user_id="bob", session_id="s", state={"user:k": "bob"}
        )
        await root_service.append_event(bob_session, event("bob's"))

        service = SqlSessionService(store.scoped("alice"))
        mine = await service.create_session(
            app_name=APP, user_id="alice", session_id="s", state={"user:k": "alice"}
        )
        await service.append_event(mine, event("alice's"))
        found = await service.get_session(app_name=APP, user_id="alice", session_id="s")
        assert found is not None and texts(found) == ["alice's"]

        # Another user is absent: nothing read, listed, created or deleted.
        assert await service.get_session(app_name=APP, user_id="bob", session_id="s") is None
        assert await service.get_user_state(app_name=APP, user_id="bob") == {}
        listed = await service.list_sessions(app_name=APP)
        assert [(s.user_id, s.id) for s in listed.sessions] == [("alice", "s")]
        assert (await service.list_sessions(app_name=APP, user_id="bob")).sessions == []
        with pytest.raises(InvalidInputError) as caught:
            await service.create_session(app_name=APP, user_id="bob", session_id="new")
        assert isinstance(caught.value, InputValidationError)  # ADK's bad-request error
        assert caught.value.field == "user_id"
        await service.delete_session(app_name=APP, user_id="bob", session_id="s")
        with pytest.raises(AdkNotFound):
            await service.append_event(bob_session, event("through alice's service"))
        theirs = await root_service.get_session(app_name=APP, user_id="bob", session_id="s")
        assert theirs is not None and texts(theirs) == ["bob's"]
        assert sorted(await store.scoped("bob").list()) == [f"adk-user-state:{APP}", "s"]

        # App state is shared by every owner, out of this store's reach: refused, nothing written.
        with pytest.raises(InvalidInputError) as caught:
            await service.create_session(
                app_name=APP, user_id="alice", session_id="t", state={"app:k": 1}
            )
        assert caught.value.field == "state[app:k]"
        assert await service.get_session(app_name=APP, user_id="alice", session_id="t") is None
        with pytest.raises(InvalidInputError):
            await service.append_event(mine, event("app write", {"app:k": 1}))
        again = await service.get_session(app_name=APP, user_id="alice", session_id="s")
        assert again is not None and texts(again) == ["alice's"]
        assert await root_service.get_app_state(app_name=APP) == {}

    run(migrated_url, body)


def test_a_service_on_a_store_scoped_to_a_user_and_an_agent_serves_that_app_only(
    migrated_url: str,
) -> None:
    async def body(root_service: SqlSessionService, store: AsyncStore) -> None:
        await root_service.create_session(app_name=OTHER_APP, user_id="alice", session_id="o")
        service = SqlSessionService(store.scoped("alice", agent_id=APP))
        await service.create_session(app_name=APP, user_id="alice", session_id="s")
        assert (
            await service.get_session(app_name=OTHER_APP, user_id="alice", session_id="o") is None
        )
        assert (await service.list_sessions(app_name=OTHER_APP)).sessions == []
        with pytest.raises(InvalidInputError) as caught:
            await service.create_session(app_name=OTHER_APP, user_id="alice", session_id="p")
        assert isinstance(caught.value, InputValidationError)
        assert caught.value.field == "app_name"
        listed = await service.list_sessions(app_name=APP)
        assert [(s.user_id, s.id) for s in listed.sessions] == [("alice", "s")]

    run(migrated_url, body)


# --- PostgreSQL row-level security: each user's reads run in that user's row scope -------------


@pytest.fixture
def row_secured_app_url(postgres_url: str) -> Iterator[str]:
    """The migrated test database with row security on, reached as a role that does not own
    the tables (so the policies apply to it)."""
    migrate(postgres_url)
    enable_row_security(postgres_url)
    with application_role(postgres_url) as (_role, url):
        yield url


@pytest.mark.postgres
def test_with_row_security_the_app_role_reads_each_users_sessions_and_state_in_their_scope(
    row_secured_app_url: str,
) -> None:
    async def main() -> None:
        store = AsyncStore(StoreConfig(url=row_secured_app_url, row_security=True, ttl=None))
        try:
            service = SqlSessionService(store)
            for user in ("alice", "bob"):
                session = await service.create_session(
                    app_name=APP, user_id=user, session_id="s", state={"user:k": user}
                )
                await service.append_event(session, event(f"{user} 1", {"app:shared": 1}))
                await service.append_event(session, event(f"{user} 2", {"own": user}))
            expected_state = {"own": "", "user:k": "", "app:shared": 1}
            for user in ("alice", "bob"):
                kw = {"app_name": APP, "user_id": user, "session_id": "s"}
                state = {**expected_state, "own": user, "user:k": user}
                full = await service.get_session(**kw)
                assert full is not None and texts(full) == [f"{user} 1", f"{user} 2"]
                assert full.state == state
                recent = await service.get_session(
                    **kw, config=GetSessionConfig(num_recent_events=1)
                )
                assert recent is not None and texts(recent) == [f"{user} 2"]
                assert recent.state == state
                listed = await service.list_sessions(app_name=APP, user_id=user)
                assert [(s.user_id, s.id, s.state) for s in listed.sessions] == [(user, "s", state)]
            # Every user's sessions at once would cross owners, which the database forbids.
            with pytest.raises(InvalidInputError) as caught:
                await service.list_sessions(app_name=APP)
            assert caught.value.field == "user_id"
        finally:
            await store.close()

    asyncio.run(main())
