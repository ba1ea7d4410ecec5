"""Reads for what ADK needs beside the events: session heads (update time and metadata, i.e.
kind and state) of several sessions at once, live ones only, across owners when allowed.

``get_session`` needs the session's state and its user's and app's state (three sessions, in
two owners: the user's and the default one); ``list_sessions`` needs the state of every ADK
session of an app, of one user or of all users. Loading each session would read all its
events, so these read only the ``sessions`` rows and their ``session_metadata`` rows, in one
statement each (lookups by ``session_id``, co-located on Citus, where the ids are known).

A head is keyed by the session's identity ``(owner, id)``. A root store may read any owner;
a scoped store reads only its own owner (and its agent, if it has one): what is outside the
scope is absent, as everywhere else in sqlsessions. With row-level security each owner's
read sets that owner as its transaction's row scope, as the store does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import or_, select

from sqlsessions import schema
from sqlsessions.aio import AsyncStore
from sqlsessions.engine import is_database_error, wrap_error
from sqlsessions.integrations.adk_mapping import (
    KIND_KEY,
    SESSION_KIND,
    AdkInputError,
    state_entries,
)
from sqlsessions.row_security import row_scope_statement

_CHUNK = 500

Identity = tuple[str, str]
"""A session's identity: (owner, session id)."""


@dataclass
class Head:
    """A live session's last update and its metadata entries."""

    updated_at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)


def state_of(heads: Mapping[Identity, Head], identity: Identity) -> dict[str, Any]:
    """The state entries of one session's head (``{}`` if it is not among `heads`)."""
    head = heads.get(identity)
    return {} if head is None else state_entries(head.metadata)


def is_adk_session(head: Head | None) -> bool:
    """Whether `head` is an ADK session's (not a state session's, nor one ADK did not make)."""
    return head is not None and head.metadata.get(KIND_KEY) == SESSION_KIND


def sees_every_owner(store: AsyncStore) -> bool:
    """Whether `store` is a root store: only a root store may make a view of any owner."""
    return store.is_root


def _visible(store: AsyncStore, every_owner: bool, owner: str, agent_id: str) -> bool:
    """Whether sessions of (owner, agent_id) are inside what `store` may read."""
    scope = store.scope
    if scope.agent_id is not None and scope.agent_id != agent_id:
        return False
    return every_owner or owner == scope.owner


def _heads_query(agent_id: str) -> Any:
    sessions, meta = schema.sessions, schema.session_metadata
    now = datetime.now(timezone.utc)
    return (
        select(sessions.c.owner, sessions.c.id, sessions.c.updated_at, meta.c.key, meta.c.value)
        .select_from(
            sessions.outerjoin(
                meta, (meta.c.session_id == sessions.c.id) & (meta.c.owner == sessions.c.owner)
            )
        )
        .where(
            sessions.c.agent_id == agent_id,
            or_(sessions.c.expires_at.is_(None), sessions.c.expires_at > now),
        )
    )


async def _collect(
    store: AsyncStore, queries: Sequence[tuple[str | None, Any]], wanted: set[Identity] | None
) -> dict[Identity, Head]:
    """Run (owner, query) pairs; with row-level security each runs in a transaction whose
    row scope is its owner (owner None: no owner to scope to, refused before this)."""
    found: dict[Identity, Head] = {}
    scoped = store.config.row_security
    try:
        async with store.engine.connect() as conn:
            if conn.dialect.name == "postgresql" and not scoped:  # no BEGIN, no ROLLBACK
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            for owner, query in queries:
                if scoped:
                    await conn.execute(row_scope_statement(owner or ""))
                for row in await conn.execute(query):
                    identity = (row.owner, row.id)
                    if wanted is not None and identity not in wanted:
                        continue
                    head = found.setdefault(identity, Head(row.updated_at))
                    if row.key is not None:
                        head.metadata[row.key] = row.value
                if scoped:
                    await conn.rollback()  # read only: ends the transaction and its scope
    except Exception as exc:
        if is_database_error(exc):
            raise wrap_error(exc, store.engine.url) from exc
        raise
    return found


async def read_heads(
    store: AsyncStore, agent_id: str, identities: Sequence[Identity], *, every_owner: bool
) -> dict[Identity, Head]:
    """(owner, id) -> head, for the identities naming a live session of `agent_id` that
    `store` may read (`every_owner`: the store is a root store, which may read any owner)."""
    wanted = [i for i in dict.fromkeys(identities) if _visible(store, every_owner, i[0], agent_id)]
    if not wanted:
        return {}
    sessions = schema.sessions
    by_owner = [
        (owner, sessions.c.owner == owner, sorted({i[1] for i in wanted if i[0] == owner}))
        for owner in dict.fromkeys(i[0] for i in wanted)
    ]
    if len(wanted) <= _CHUNK and not store.config.row_security:  # one statement, any owners
        either = or_(*(same_owner & sessions.c.id.in_(ids) for _, same_owner, ids in by_owner))
        return await _collect(store, [(None, _heads_query(agent_id).where(either))], set(wanted))
    queries = [
        (owner, _heads_query(agent_id).where(same_owner, sessions.c.id.in_(ids[i : i + _CHUNK])))
        for owner, same_owner, ids in by_owner  # with row security: one owner per transaction
        for i in range(0, len(ids), _CHUNK)
    ]
    return await _collect(store, queries, set(wanted))


async def read_agent_heads(
    store: AsyncStore, agent_id: str, owner: str | None, *, every_owner: bool
) -> dict[Identity, Head]:
    """(owner, id) -> head of every live session of `agent_id` of `owner` (None: of every
    owner, which only a root store may read; a scoped store reads its own owner)."""
    if owner is None and not every_owner:
        owner = store.scope.owner
    if owner is not None and not _visible(store, every_owner, owner, agent_id):
        return {}
    if owner is None and store.config.row_security:
        raise AdkInputError(
            "user_id",
            "is required with row-level security: every user's sessions span owners, and "
            "a transaction sees one owner",
        )
    query = _heads_query(agent_id)
    if owner is not None:
        query = query.where(schema.sessions.c.owner == owner)
    return await _collect(store, [(owner, query)], None)
