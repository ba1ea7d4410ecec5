"""Reads for what ADK needs beside the events: session heads (update time and metadata, i.e.
kind and state) of several sessions at once, live ones only, across owners when allowed.

``get_session`` needs the session's state and its user's and app's state (three sessions, in
two owners: the user's and the default one); ``list_sessions`` needs the state of every ADK
session of an app, of one user or of all users. Loading each session would read all its
events, so these read only the ``sessions`` rows and their ``session_metadata`` rows, in one
statement each (lookups by ``session_id``, co-located on Citus, where the ids are known).

A head is keyed by the session's identity ``(owner, id)``. A root store may read any owner;
a scoped store reads only its own owner (and its agent, if it has one): what is outside the
scope is absent, as everywhere else in sqlsessions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import or_, select

from sqlsessions import schema
from sqlsessions.aio import AsyncStore
from sqlsessions.engine import is_database_error, wrap_error

_CHUNK = 500

Identity = tuple[str, str]
"""A session's identity: (owner, session id)."""


@dataclass
class Head:
    """A live session's last update and its metadata entries."""

    updated_at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)


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
    store: AsyncStore, queries: Sequence[Any], wanted: set[Identity] | None
) -> dict[Identity, Head]:
    found: dict[Identity, Head] = {}
    try:
        async with store.engine.connect() as conn:
            if conn.dialect.name == "postgresql":  # single statements: no BEGIN, no ROLLBACK
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            for query in queries:
                for row in await conn.execute(query):
                    identity = (row.owner, row.id)
                    if wanted is not None and identity not in wanted:
                        continue
                    head = found.setdefault(identity, Head(row.updated_at))
                    if row.key is not None:
                        head.metadata[row.key] = row.value
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
    queries = []
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        queries.append(
            _heads_query(agent_id).where(
                sessions.c.id.in_(sorted({i[1] for i in chunk})),
                sessions.c.owner.in_(sorted({i[0] for i in chunk})),
            )
        )
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
    query = _heads_query(agent_id)
    if owner is not None:
        query = query.where(schema.sessions.c.owner == owner)
    return await _collect(store, [query], None)
