"""One read for what ADK needs beside the events: session heads (update time and metadata,
i.e. ids and state) of several sessions at once, live ones only.

``get_session`` needs the session's state and its app's and user's state (three sessions);
``list_sessions`` needs the state of every listed session. Loading each session would read
all its events, so this reads only the ``sessions`` rows and their ``session_metadata`` rows
(primary-key lookups by ``session_id``, co-located on Citus), in one statement.
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


@dataclass
class Head:
    """A live session's last update and its metadata entries."""

    updated_at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)


async def read_heads(store: AsyncStore, session_ids: Sequence[str]) -> dict[str, Head]:
    """session id -> its head, for the ids that name a live (existing, unexpired) session."""
    sessions, meta = schema.sessions, schema.session_metadata
    now = datetime.now(timezone.utc)
    found: dict[str, Head] = {}
    try:
        async with store.engine.connect() as conn:
            for start in range(0, len(session_ids), _CHUNK):
                chunk = list(dict.fromkeys(session_ids[start : start + _CHUNK]))
                query = (
                    select(sessions.c.id, sessions.c.updated_at, meta.c.key, meta.c.value)
                    .select_from(
                        sessions.outerjoin(
                            meta,
                            (meta.c.session_id == sessions.c.id)
                            & (meta.c.owner == sessions.c.owner),
                        )
                    )
                    .where(
                        sessions.c.id.in_(chunk),
                        sessions.c.owner == store.scope.owner,  # the store's scope only
                        or_(sessions.c.expires_at.is_(None), sessions.c.expires_at > now),
                    )
                )
                if store.scope.agent_id is not None:
                    query = query.where(sessions.c.agent_id == store.scope.agent_id)
                for row in await conn.execute(query):
                    head = found.setdefault(row.id, Head(row.updated_at))
                    if row.key is not None:
                        head.metadata[row.key] = row.value
    except Exception as exc:
        if is_database_error(exc):
            raise wrap_error(exc, store.engine.url) from exc
        raise
    return found
