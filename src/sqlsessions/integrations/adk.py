"""Google ADK session service on sqlsessions: ``SqlSessionService`` (a ``BaseSessionService``).

Switch with one line::

    session_service = SqlSessionService.from_url("postgresql://.../agents")  # was
    # DatabaseSessionService(db_url=...)

Storage mapping (see the README's "Google ADK" section):

* an ADK session ``(app_name, user_id, session_id)`` is the sqlsessions session with
  owner = ``user_id``, ``agent_id`` = ``app_name`` and id = ``session_id`` (read and written
  through ``store.scoped(user_id, agent_id=app_name)``), metadata ``adk.kind`` =
  ``"session"`` and one metadata entry ``state:<key>`` per session-state key. The owner's ids
  are shared by its agents: one user cannot have the same session id in two apps;
* user state (``user:`` keys) lives in the session ``adk-user-state:<app>`` of the user's
  owner, app state (``app:`` keys) in the session ``adk-app-state:<app>`` of the default
  owner ``''``, as ``state:<key>`` metadata entries without the prefix (dedicated sessions
  keep every row keyed by ``session_id``, so Citus co-locates them); these two id prefixes
  are reserved; ``temp:`` keys are never written;
* each event is stored losslessly as an item with its chat projection
  (:mod:`sqlsessions.integrations.adk_events`).

A service on a store already scoped to an owner serves that owner's user only (any other
user is absent; ``create_session`` for one raises :class:`AdkInputError`) and no app state,
which is shared by every owner (``app:`` keys are refused, nothing is written).

Stale sessions: each ADK ``Session`` object this service returns is bound to the sqlsessions
session it was read from; ``append_event`` saves through that binding, so the store's version
check rejects an append through an object older than storage with ADK's
``StaleSessionError``. An unbound object (built by hand, or copied) falls back to ADK's own
rule: it is stale if storage was updated after its ``last_update_time`` and its last event is
not the last stored one.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from google.adk.errors import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError as AdkNotFound
from google.adk.events.event import Event
from google.adk.sessions import BaseSessionService, Session
from google.adk.sessions.base_session_service import GetSessionConfig, ListSessionsResponse
from google.adk.sessions.state import State
from sqlalchemy.engine import URL
from typing_extensions import override

from sqlsessions import Session as StoredSession
from sqlsessions.aio import AsyncStore
from sqlsessions.errors import ConflictError, InvalidInputError, SessionNotFoundError
from sqlsessions.integrations.adk_events import (
    EVENT_FORMAT,
    event_messages,
    select_events,
    stored_events,
)
from sqlsessions.integrations.adk_mapping import (
    APP_STATE_KIND,
    APP_STATE_OWNER,
    KIND_KEY,
    SESSION_KIND,
    STATE_PREFIX,
    USER_STATE_KIND,
    AdkInputError,
    app_state_id,
    check_state,
    is_reserved,
    merge_state,
    split_state,
    state_entries,
    user_state_id,
)
from sqlsessions.integrations.adk_state import (
    Head,
    Identity,
    is_adk_session,
    read_agent_heads,
    read_heads,
    sees_every_owner,
    state_of,
)

_SCOPED_STATE_RETRIES = 50
_MAX_VIEWS = 128
_ADK_FIELDS = {"owner": "user_id", "agent_id": "app_name"}


def _moment(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, timezone.utc)


class SqlSessionService(BaseSessionService):
    """ADK's ``BaseSessionService`` on an :class:`~sqlsessions.AsyncStore`.

    Give it a store (never closed by the service) or use :meth:`from_url`, which creates one
    (closed by :meth:`close`) with no TTL by default, as ADK's own backends keep sessions
    until deleted. On a root store it serves every user (each user is an owner); on a store
    scoped to an owner, only the user of that id.
    """

    def __init__(self, store: AsyncStore) -> None:
        self.store = store
        self._owns_store = False
        self._ready = False
        self._every_owner = sees_every_owner(store)
        # (user_id, app_name) -> the view of the store an ADK session of theirs lives in.
        self._views: OrderedDict[tuple[str, str], AsyncStore] = OrderedDict()
        # id(ADK Session object) -> the sqlsessions session it was read from / last saved as.
        self._bound: dict[int, StoredSession] = {}
        self._locks: weakref.WeakValueDictionary[tuple[str, str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    @classmethod
    def from_url(
        cls, url: str | URL, *, ttl: timedelta | float | None = None, **options: Any
    ) -> SqlSessionService:
        """A service on a new store for `url` (``postgresql://...`` or ``sqlite:///...``)."""
        service = cls(AsyncStore.from_url(url, ttl=ttl, **options))
        service._owns_store = True
        return service

    async def close(self) -> None:
        """Close the store if this service created it."""
        self._bound.clear()
        self._views.clear()
        if self._owns_store:
            await self.store.close()

    async def clear_cache(self) -> None:
        """Empty the session caches of the store and of the views this service reads
        through; storage is untouched."""
        await self.store.clear_cache()
        for view in self._views.values():
            await view.clear_cache()

    async def __aenter__(self) -> SqlSessionService:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- where things live ----------------------------------------------------------------

    def _view(self, app_name: str, user_id: str) -> AsyncStore | None:
        """The store scoped to owner `user_id`, agent `app_name`; None if that is outside
        this service's store (a scoped store serves its own owner, and its agent if any)."""
        for field, value in (("app_name", app_name), ("user_id", user_id)):
            if not isinstance(value, str):
                raise AdkInputError(field, f"must be a string, not {type(value).__name__}")
        view = self._views.get((user_id, app_name))
        if view is not None:
            self._views.move_to_end((user_id, app_name))
            return view
        scope = self.store.scope
        if not self._every_owner and user_id != scope.owner:
            return None
        if scope.agent_id is not None and scope.agent_id != app_name:
            return None
        try:
            view = self.store.scoped(user_id if self._every_owner else None, agent_id=app_name)
        except InvalidInputError as exc:
            raise AdkInputError(_ADK_FIELDS.get(exc.field, exc.field), exc.reason) from exc
        self._views[(user_id, app_name)] = view
        if len(self._views) > _MAX_VIEWS:  # each view has its own session cache
            self._views.popitem(last=False)
        return view

    def _require_view(self, app_name: str, user_id: str) -> AsyncStore:
        view = self._view(app_name, user_id)
        if view is None:
            field, value = (
                ("app_name", app_name)
                if self.store.scope.agent_id not in (None, app_name)
                else ("user_id", user_id)
            )
            raise AdkInputError(
                field, f"{value!r} is outside this service's store scope {self.store.scope}"
            )
        return view

    def _check_app_delta(self, field: str, app_delta: Mapping[str, Any]) -> None:
        """Refuse app state a scoped service cannot write (it lives in the default owner)."""
        if app_delta and not self._can_reach_app_state():
            key = next(iter(app_delta))
            raise AdkInputError(
                f"{field}[{State.APP_PREFIX}{key}]",
                "app state is shared by every user, so it lives in the default owner, which "
                f"this service's store (scope {self.store.scope}) cannot reach",
            )

    def _can_reach_app_state(self) -> bool:
        return self._every_owner or self.store.scope.owner == APP_STATE_OWNER

    async def _heads(self, app_name: str, identities: list[Identity]) -> dict[Identity, Head]:
        await self._prepare()
        return await read_heads(self.store, app_name, identities, every_owner=self._every_owner)

    async def _prepare(self) -> None:
        if not self._ready:  # the store migrates / checks its schema on its first operation
            await self.store.list_sessions(limit=1)
            self._ready = True

    # --- binding ADK Session objects to what they were read from ---------------------------

    def _bind(self, session: Session, stored: StoredSession) -> Session:
        key = id(session)
        if key not in self._bound:
            weakref.finalize(session, self._bound.pop, key, None)
        self._bound[key] = stored
        session.last_update_time = stored.updated_at.timestamp()
        return session

    def _lock(self, key: tuple[str, str, str]) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock

    # --- BaseSessionService -----------------------------------------------------------------

    @override
    async def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> Session:
        session_id = session_id if session_id is not None else str(uuid.uuid4())
        if is_reserved(session_id):
            raise AdkInputError("session_id", "is reserved: it names a state session")
        view = self._require_view(app_name, user_id)
        app_delta, user_delta, own = split_state(state or {})
        check_state("state", state or {})
        self._check_app_delta("state", app_delta)
        stored = StoredSession.new(session_id, agent_id=app_name, owner=user_id)
        stored.metadata[KIND_KEY] = SESSION_KIND
        for key, value in own.items():
            stored.set_metadata(STATE_PREFIX + key, value)
        try:
            await view.save(stored)
        except ConflictError as exc:
            raise AlreadyExistsError(f"Session with id {session_id} already exists.") from exc
        app_state = await self._apply_delta(
            self._view(app_name, APP_STATE_OWNER), app_state_id(app_name), APP_STATE_KIND, app_delta
        )
        user_state = await self._apply_delta(
            view, user_state_id(app_name), USER_STATE_KIND, user_delta
        )
        session = Session(
            id=session_id,
            app_name=app_name,
            user_id=user_id,
            state=merge_state(app_state, user_state, own),
        )
        return self._bind(session, stored)

    @override
    async def get_session(
        self,
        *,
        app_name: str,
        user_id: str,
        session_id: str,
        config: GetSessionConfig | None = None,
    ) -> Session | None:
        view = None if is_reserved(session_id) else self._view(app_name, user_id)
        if view is None:
            return None
        config = config or GetSessionConfig()
        if config.num_recent_events is not None and config.after_timestamp is None:
            return await self._get_recent(
                view, app_name, user_id, session_id, config.num_recent_events
            )
        try:
            stored = await view.get_if_exists(session_id)
        except SessionNotFoundError:
            return None
        if stored.metadata.get(KIND_KEY) != SESSION_KIND:
            return None  # a session of the app's agent that ADK did not make
        events = select_events(
            stored_events(stored.messages), config.num_recent_events, config.after_timestamp
        )
        app_key = (APP_STATE_OWNER, app_state_id(app_name))
        user_key = (user_id, user_state_id(app_name))
        heads = await self._heads(app_name, [app_key, user_key])
        session = Session(
            id=session_id,
            app_name=app_name,
            user_id=user_id,
            state=merge_state(
                state_of(heads, app_key), state_of(heads, user_key), state_entries(stored.metadata)
            ),
            events=[Event.model_validate(event) for event in events],
        )
        return self._bind(session, stored)

    async def _get_recent(
        self, view: AsyncStore, app_name: str, user_id: str, session_id: str, count: int
    ) -> Session | None:
        """The last `count` events without loading the rest: the session's head and its app
        and user state in one statement, then the newest rows. The object is not bound, so
        an append through it is checked by ADK's rule (update time and last event)."""
        key = (user_id, session_id)
        app_key = (APP_STATE_OWNER, app_state_id(app_name))
        user_key = (user_id, user_state_id(app_name))
        heads = await self._heads(app_name, [key, app_key, user_key])
        if not is_adk_session(heads.get(key)):
            return None
        events = await self._last_events(view, session_id, count) if count else []
        session = Session(
            id=session_id,
            app_name=app_name,
            user_id=user_id,
            state=merge_state(
                state_of(heads, app_key), state_of(heads, user_key), state_of(heads, key)
            ),
            events=[Event.model_validate(event) for event in events],
            last_update_time=heads[key].updated_at.timestamp(),
        )
        return session

    async def _last_events(self, view: AsyncStore, key: str, count: int) -> list[dict[str, Any]]:
        """The newest `count` events, reading a window of rows that grows until it holds
        them (an event may span several rows; most take one, so the first window is only a
        little larger than `count`: every row read is a JSON document parsed)."""
        window = count + max(8, count // 4)
        while True:
            rows = await view.last_items(key, EVENT_FORMAT, window)
            events = [row for row in rows if isinstance(row, dict)]  # continuations skipped
            if len(events) >= count or len(rows) < window:
                return events[-count:]
            window *= 4

    @override
    async def list_sessions(
        self, *, app_name: str, user_id: str | None = None
    ) -> ListSessionsResponse:
        if user_id is not None and self._view(app_name, user_id) is None:
            return ListSessionsResponse(sessions=[])
        await self._prepare()
        heads = await read_agent_heads(self.store, app_name, user_id, every_owner=self._every_owner)
        app_key = (APP_STATE_OWNER, app_state_id(app_name))
        if app_key not in heads:
            heads.update(await self._heads(app_name, [app_key]))
        app_state = state_of(heads, app_key)
        sessions = [
            Session(
                id=session_id,
                app_name=app_name,
                user_id=owner,
                state=merge_state(
                    app_state,
                    state_of(heads, (owner, user_state_id(app_name))),
                    state_entries(head.metadata),
                ),
                last_update_time=head.updated_at.timestamp(),
            )
            for (owner, session_id), head in heads.items()
            if is_adk_session(head)
        ]
        sessions.sort(key=lambda s: (s.last_update_time, s.user_id, s.id))
        return ListSessionsResponse(sessions=sessions)

    @override
    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        view = None if is_reserved(session_id) else self._view(app_name, user_id)
        if view is not None:
            await view.delete(session_id)

    @override
    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        if self._view(app_name, user_id) is None:
            return {}
        key = (user_id, user_state_id(app_name))
        return state_of(await self._heads(app_name, [key]), key)

    async def get_app_state(self, *, app_name: str) -> dict[str, Any]:
        """The app-scoped state (keys without the ``app:`` prefix); ``{}`` on a service
        whose store is scoped to an owner other than the default one."""
        key = (APP_STATE_OWNER, app_state_id(app_name))
        return state_of(await self._heads(app_name, [key]), key)

    @override
    async def append_event(self, session: Session, event: Event) -> Event:
        if event.partial:
            return event
        view = None if is_reserved(session.id) else self._view(session.app_name, session.user_id)
        if view is None:
            raise AdkNotFound(f"Session {session.id} not found.")
        self._apply_temp_state(session, event)
        event = self._trim_temp_delta_state(event)
        delta = event.actions.state_delta if event.actions and event.actions.state_delta else {}
        app_delta, user_delta, own_delta = split_state(delta)
        check_state("event.actions.state_delta", delta)
        self._check_app_delta("event.actions.state_delta", app_delta)
        try:
            item = event.model_dump(mode="json", exclude_none=True)
        except Exception as exc:  # pydantic's serialization errors: a value that is not JSON
            raise InvalidInputError("event", f"cannot be written as JSON: {exc}") from exc
        async with self._lock((session.user_id, session.app_name, session.id)):
            stored = self._bound.get(id(session))
            if stored is None:
                stored = await self._adopt(view, session)
            rows = event_messages(item)
            stored.messages.extend(rows)
            for name, value in own_delta.items():
                stored.set_metadata(STATE_PREFIX + name, value)
            stored.updated_at = max(stored.updated_at, _moment(event.timestamp))
            try:
                await view.save(stored)
            except BaseException as exc:
                # `stored` now holds rows that may not be stored: never save through it again.
                self._bound.pop(id(session), None)
                if not isinstance(exc, ConflictError):
                    raise
                if not await self._exists(view, session.id):
                    raise AdkNotFound(f"Session {session.id} not found.") from exc
                raise StaleSessionError(
                    "The session has been modified in storage since it was loaded. "
                    "Please reload the session before appending more events."
                ) from exc
            self._bind(session, stored)
        if app_delta:
            await self._apply_delta(
                self._view(session.app_name, APP_STATE_OWNER),
                app_state_id(session.app_name),
                APP_STATE_KIND,
                app_delta,
            )
        if user_delta:
            await self._apply_delta(
                view, user_state_id(session.app_name), USER_STATE_KIND, user_delta
            )
        return self._commit_event_to_session(session, event)

    # --- helpers --------------------------------------------------------------------------

    async def _adopt(self, view: AsyncStore, session: Session) -> StoredSession:
        """Bind a Session object this service did not hand out, unless it is stale."""
        try:
            stored = await view.get_if_exists(session.id)
        except SessionNotFoundError as exc:
            raise AdkNotFound(f"Session {session.id} not found.") from exc
        if stored.metadata.get(KIND_KEY) != SESSION_KIND:
            raise AdkNotFound(f"Session {session.id} not found.")
        if stored.updated_at.timestamp() > session.last_update_time:
            events = stored_events(stored.messages)
            last_stored = events[-1].get("id") if events else None
            last_held = session.events[-1].id if session.events else None
            if last_stored != last_held:
                raise StaleSessionError(
                    "The session has been modified in storage since it was loaded. "
                    "Please reload the session before appending more events."
                )
        return stored

    async def _exists(self, view: AsyncStore, session_id: str) -> bool:
        try:
            await view.get_if_exists(session_id)
        except SessionNotFoundError:
            return False
        return True

    async def _apply_delta(
        self, view: AsyncStore | None, session_id: str, kind: str, delta: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Apply `delta` to the state session `session_id` of `view`; returns its state
        (``{}`` when `view` is None: app state out of reach, and then `delta` is empty)."""
        if view is None:
            return {}
        if not delta:
            key = (view.scope.owner, session_id)
            return state_of(await self._heads(view.scope.agent_id or "", [key]), key)
        for _ in range(_SCOPED_STATE_RETRIES):
            stored = await view.get(session_id)
            stored.metadata.setdefault(KIND_KEY, kind)
            for name, value in delta.items():
                stored.set_metadata(STATE_PREFIX + name, value)
            try:
                await view.save(stored)
            except ConflictError:
                continue  # another session of this app/user wrote it: re-read, re-apply
            return state_entries(stored.metadata)
        raise ConflictError(f"could not update {session_id!r}: too many concurrent writers")
