"""Google ADK session service on sqlsessions: ``SqlSessionService`` (a ``BaseSessionService``).

Switch with one line::

    session_service = SqlSessionService.from_url("postgresql://.../agents")  # was
    # DatabaseSessionService(db_url=...)

Storage mapping (see the README's "Google ADK" section):

* an ADK session ``(app_name, user_id, session_id)`` is the sqlsessions session
  ``adk:<app>/<user>/<session>`` (each part percent-encoded, so ids of different apps or users
  never collide), ``agent_id`` = ``app_name``, metadata ``adk.kind`` = ``"session"``,
  ``adk.app_name``, ``adk.user_id``, ``adk.session_id``, and one metadata entry
  ``state:<key>`` per session-state key;
* app state (``app:`` keys) lives in the session ``adk-app:<app>`` and user state (``user:``
  keys) in ``adk-user:<app>/<user>``, as ``state:<key>`` metadata entries without the prefix
  (dedicated sessions keep every row keyed by ``session_id``, so Citus co-locates them);
  ``temp:`` keys are never written;
* each event is stored losslessly as an item with its chat projection
  (:mod:`sqlsessions.integrations.adk_events`).

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
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

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
from sqlsessions.integrations.adk_state import Head, read_heads
from sqlsessions.validation import metadata_problem

STATE_PREFIX = "state:"
"""Metadata key prefix of one state entry (``state:<key>``)."""

KIND_KEY = "adk.kind"
SESSION_KIND, APP_STATE_KIND, USER_STATE_KIND = "session", "app_state", "user_state"

_SCOPED_STATE_RETRIES = 50


def _part(value: str) -> str:
    return quote(value, safe="")


def session_key(app_name: str, user_id: str, session_id: str) -> str:
    """The sqlsessions session id of an ADK session."""
    return f"adk:{_part(app_name)}/{_part(user_id)}/{_part(session_id)}"


def app_state_key(app_name: str) -> str:
    """The sqlsessions session id holding an app's ``app:`` state."""
    return f"adk-app:{_part(app_name)}"


def user_state_key(app_name: str, user_id: str) -> str:
    """The sqlsessions session id holding a user's ``user:`` state within an app."""
    return f"adk-user:{_part(app_name)}/{_part(user_id)}"


def split_state(state: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(app, user, session) deltas of a state mapping; ``temp:`` keys dropped, prefixes removed."""
    app: dict[str, Any] = {}
    user: dict[str, Any] = {}
    own: dict[str, Any] = {}
    for key, value in state.items():
        if key.startswith(State.APP_PREFIX):
            app[key.removeprefix(State.APP_PREFIX)] = value
        elif key.startswith(State.USER_PREFIX):
            user[key.removeprefix(State.USER_PREFIX)] = value
        elif not key.startswith(State.TEMP_PREFIX):
            own[key] = value
    return app, user, own


def state_entries(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The state stored in a session's metadata (``state:<key>`` entries), prefix removed."""
    return {
        key.removeprefix(STATE_PREFIX): value
        for key, value in metadata.items()
        if key.startswith(STATE_PREFIX)
    }


def merge_state(
    app: Mapping[str, Any], user: Mapping[str, Any], own: Mapping[str, Any]
) -> dict[str, Any]:
    """ADK's merged view: session keys, then ``app:`` and ``user:`` keys with their prefixes."""
    merged = dict(own)
    merged.update({State.APP_PREFIX + key: value for key, value in app.items()})
    merged.update({State.USER_PREFIX + key: value for key, value in user.items()})
    return merged


def _check_state(field: str, state: Mapping[str, Any]) -> None:
    """Refuse, before anything is written, a state value that cannot be stored as JSON."""
    for key, value in state.items():
        problem = metadata_problem(STATE_PREFIX + str(key), value)
        if problem is not None:
            raise InvalidInputError(f"{field}[{key}]", problem[1])


def _state(heads: Mapping[str, Head], key: str) -> dict[str, Any]:
    head = heads.get(key)
    return {} if head is None else state_entries(head.metadata)


def _moment(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, timezone.utc)


class SqlSessionService(BaseSessionService):
    """ADK's ``BaseSessionService`` on an :class:`~sqlsessions.AsyncStore`.

    Give it a store (never closed by the service) or use :meth:`from_url`, which creates one
    (closed by :meth:`close`) with no TTL by default, as ADK's own backends keep sessions
    until deleted.
    """

    def __init__(self, store: AsyncStore) -> None:
        self.store = store
        self._owns_store = False
        self._ready = False
        # id(ADK Session object) -> the sqlsessions session it was read from / last saved as.
        self._bound: dict[int, StoredSession] = {}
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

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
        if self._owns_store:
            await self.store.close()

    async def __aenter__(self) -> SqlSessionService:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- binding ADK Session objects to what they were read from ---------------------------

    def _bind(self, session: Session, stored: StoredSession) -> Session:
        key = id(session)
        if key not in self._bound:
            weakref.finalize(session, self._bound.pop, key, None)
        self._bound[key] = stored
        session.last_update_time = stored.updated_at.timestamp()
        return session

    def _lock(self, key: str) -> asyncio.Lock:
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
        app_delta, user_delta, own = split_state(state or {})
        _check_state("state", state or {})
        stored = StoredSession.new(session_key(app_name, user_id, session_id), agent_id=app_name)
        stored.metadata.update(
            {
                KIND_KEY: SESSION_KIND,
                "adk.app_name": app_name,
                "adk.user_id": user_id,
                "adk.session_id": session_id,
            }
        )
        for key, value in own.items():
            stored.set_metadata(STATE_PREFIX + key, value)
        try:
            await self.store.save(stored)
        except ConflictError as exc:
            raise AlreadyExistsError(f"Session with id {session_id} already exists.") from exc
        app_state, user_state = await self._update_scoped_state(
            app_name, user_id, app_delta, user_delta
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
        key = session_key(app_name, user_id, session_id)
        config = config or GetSessionConfig()
        if config.num_recent_events is not None and config.after_timestamp is None:
            return await self._get_recent(app_name, user_id, session_id, config.num_recent_events)
        try:
            stored = await self.store.get_if_exists(key)
        except SessionNotFoundError:
            return None
        events = select_events(
            stored_events(stored.messages), config.num_recent_events, config.after_timestamp
        )
        heads = await self._heads([app_state_key(app_name), user_state_key(app_name, user_id)])
        session = Session(
            id=session_id,
            app_name=app_name,
            user_id=user_id,
            state=merge_state(
                _state(heads, app_state_key(app_name)),
                _state(heads, user_state_key(app_name, user_id)),
                state_entries(stored.metadata),
            ),
            events=[Event.model_validate(event) for event in events],
        )
        return self._bind(session, stored)

    async def _get_recent(
        self, app_name: str, user_id: str, session_id: str, count: int
    ) -> Session | None:
        """The last `count` events without loading the rest: the session's head and its app
        and user state in one statement, then the newest rows. The object is not bound, so
        an append through it is checked by ADK's rule (update time and last event)."""
        key = session_key(app_name, user_id, session_id)
        app_key, user_key = app_state_key(app_name), user_state_key(app_name, user_id)
        heads = await self._heads([key, app_key, user_key])
        if key not in heads:
            return None
        events = await self._last_events(key, count) if count else []
        session = Session(
            id=session_id,
            app_name=app_name,
            user_id=user_id,
            state=merge_state(_state(heads, app_key), _state(heads, user_key), _state(heads, key)),
            events=[Event.model_validate(event) for event in events],
            last_update_time=heads[key].updated_at.timestamp(),
        )
        return session

    async def _last_events(self, key: str, count: int) -> list[dict[str, Any]]:
        """The newest `count` events, reading a window of rows that grows until it holds
        them (an event may span several rows; most take one, so the first window is only a
        little larger than `count`: every row read is a JSON document parsed)."""
        window = count + max(8, count // 4)
        while True:
            rows = await self.store.last_items(key, EVENT_FORMAT, window)
            events = [row for row in rows if isinstance(row, dict)]  # continuations skipped
            if len(events) >= count or len(rows) < window:
                return events[-count:]
            window *= 4

    async def _heads(self, keys: list[str]) -> dict[str, Head]:
        if not self._ready:  # the store migrates / checks its schema on its first operation
            await self.store.list_sessions(limit=1)
            self._ready = True
        return await read_heads(self.store, keys)

    @override
    async def list_sessions(
        self, *, app_name: str, user_id: str | None = None
    ) -> ListSessionsResponse:
        wanted: dict[str, Any] = {KIND_KEY: SESSION_KIND, "adk.app_name": app_name}
        if user_id is not None:
            wanted["adk.user_id"] = user_id
        summaries = []
        cursor: str | None = None
        while True:
            page = await self.store.list_sessions(
                agent_id=app_name, metadata=wanted, limit=1000, cursor=cursor
            )
            summaries.extend(page.sessions)
            cursor = page.next_cursor
            if cursor is None:
                break
        heads = await self._heads([summary.id for summary in summaries])
        owners = {
            str(heads[s.id].metadata.get("adk.user_id", "")) for s in summaries if s.id in heads
        }
        scoped = [app_state_key(app_name), *(user_state_key(app_name, o) for o in owners)]
        heads.update(await self._heads(scoped))
        app_state = _state(heads, app_state_key(app_name))
        sessions: list[Session] = []
        for summary in summaries:
            if summary.id not in heads:
                continue  # deleted or expired since the listing
            meta = heads[summary.id].metadata
            owner = str(meta.get("adk.user_id", ""))
            sessions.append(
                Session(
                    id=str(meta.get("adk.session_id", "")),
                    app_name=app_name,
                    user_id=owner,
                    state=merge_state(
                        app_state,
                        _state(heads, user_state_key(app_name, owner)),
                        state_entries(meta),
                    ),
                    last_update_time=summary.updated_at.timestamp(),
                )
            )
        sessions.sort(key=lambda s: (s.last_update_time, s.user_id, s.id))
        return ListSessionsResponse(sessions=sessions)

    @override
    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        await self.store.delete(session_key(app_name, user_id, session_id))

    @override
    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        return (await self._scoped_state(app_name, user_id))[1]

    async def get_app_state(self, *, app_name: str) -> dict[str, Any]:
        """The app-scoped state (keys without the ``app:`` prefix)."""
        return (await self._scoped_state(app_name, None))[0]

    @override
    async def append_event(self, session: Session, event: Event) -> Event:
        if event.partial:
            return event
        self._apply_temp_state(session, event)
        event = self._trim_temp_delta_state(event)
        key = session_key(session.app_name, session.user_id, session.id)
        delta = event.actions.state_delta if event.actions and event.actions.state_delta else {}
        app_delta, user_delta, own_delta = split_state(delta)
        _check_state("event.actions.state_delta", delta)
        try:
            item = event.model_dump(mode="json", exclude_none=True)
        except Exception as exc:  # pydantic's serialization errors: a value that is not JSON
            raise InvalidInputError("event", f"cannot be written as JSON: {exc}") from exc
        async with self._lock(key):
            stored = self._bound.get(id(session))
            if stored is None:
                stored = await self._adopt(key, session)
            rows = event_messages(item)
            stored.messages.extend(rows)
            for name, value in own_delta.items():
                stored.set_metadata(STATE_PREFIX + name, value)
            stored.updated_at = max(stored.updated_at, _moment(event.timestamp))
            try:
                await self.store.save(stored)
            except BaseException as exc:
                # `stored` now holds rows that may not be stored: never save through it again.
                self._bound.pop(id(session), None)
                if not isinstance(exc, ConflictError):
                    raise
                if not await self._exists(key):
                    raise AdkNotFound(f"Session {session.id} not found.") from exc
                raise StaleSessionError(
                    "The session has been modified in storage since it was loaded. "
                    "Please reload the session before appending more events."
                ) from exc
            self._bind(session, stored)
        if app_delta:
            await self._apply_delta(
                app_state_key(session.app_name), APP_STATE_KIND, session.app_name, None, app_delta
            )
        if user_delta:
            await self._apply_delta(
                user_state_key(session.app_name, session.user_id),
                USER_STATE_KIND,
                session.app_name,
                session.user_id,
                user_delta,
            )
        return self._commit_event_to_session(session, event)

    # --- helpers --------------------------------------------------------------------------

    async def _adopt(self, key: str, session: Session) -> StoredSession:
        """Bind a Session object this service did not hand out, unless it is stale."""
        try:
            stored = await self.store.get_if_exists(key)
        except SessionNotFoundError as exc:
            raise AdkNotFound(f"Session {session.id} not found.") from exc
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

    async def _exists(self, key: str) -> bool:
        try:
            await self.store.get_if_exists(key)
        except SessionNotFoundError:
            return False
        return True

    async def _scoped_state(
        self, app_name: str, user_id: str | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(app state, user state) as stored, prefixes removed."""
        app_key = app_state_key(app_name)
        user_key = None if user_id is None else user_state_key(app_name, user_id)
        heads = await self._heads([app_key] if user_key is None else [app_key, user_key])
        return _state(heads, app_key), {} if user_key is None else _state(heads, user_key)

    async def _metadata_if_exists(self, key: str) -> dict[str, Any]:
        head = (await self._heads([key])).get(key)
        return {} if head is None else head.metadata

    async def _update_scoped_state(
        self,
        app_name: str,
        user_id: str,
        app_delta: Mapping[str, Any],
        user_delta: Mapping[str, Any],
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Apply the deltas to the app and user state sessions; returns both states."""
        app = await self._apply_delta(
            app_state_key(app_name), APP_STATE_KIND, app_name, None, app_delta
        )
        user = await self._apply_delta(
            user_state_key(app_name, user_id), USER_STATE_KIND, app_name, user_id, user_delta
        )
        return app, user

    async def _apply_delta(
        self,
        key: str,
        kind: str,
        app_name: str,
        user_id: str | None,
        delta: Mapping[str, Any],
    ) -> dict[str, Any]:
        if not delta:
            return state_entries(await self._metadata_if_exists(key))
        for _ in range(_SCOPED_STATE_RETRIES):
            stored = await self.store.get(key)
            stored.agent_id = app_name
            stored.metadata.setdefault(KIND_KEY, kind)
            stored.metadata.setdefault("adk.app_name", app_name)
            if user_id is not None:
                stored.metadata.setdefault("adk.user_id", user_id)
            for name, value in delta.items():
                stored.set_metadata(STATE_PREFIX + name, value)
            try:
                await self.store.save(stored)
            except ConflictError:
                continue  # another session of this app/user wrote it: re-read, re-apply
            return state_entries(stored.metadata)
        raise ConflictError(f"could not update {key!r}: too many concurrent writers")
