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

from sqlalchemy import bindparam, or_, select

from sqlsessions import schema
from sqlsessions.aio import AsyncStore
from sqlsessions.engine import is_database_error, wrap_error

_CHUNK = 500


@dataclass
class Head:
    """A live session's last update and its metadata entries."""

    updated_at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)


_sessions, _meta = schema.sessions, schema.session_metadata
_select_heads = (  # built once: SQLAlchemy's compiled cache then serves every call
    select(_sessions.c.id, _sessions.c.updated_at, _meta.c.key, _meta.c.value)
    .select_from(_sessions.outerjoin(_meta, _meta.c.session_id == _sessions.c.id))
    .where(
        _sessions.c.id.in_(bindparam("ids", expanding=True)),
        or_(_sessions.c.expires_at.is_(None), _sessions.c.expires_at > bindparam("now")),
    )
)


async def read_heads(store: AsyncStore, session_ids: Sequence[str]) -> dict[str, Head]:
    """session id -> its head, for the ids that name a live (existing, unexpired) session."""
    now = datetime.now(timezone.utc)
    found: dict[str, Head] = {}
    try:
        async with store.engine.connect() as conn:
            for start in range(0, len(session_ids), _CHUNK):
                chunk = list(dict.fromkeys(session_ids[start : start + _CHUNK]))
                for row in await conn.execute(_select_heads, {"ids": chunk, "now": now}):
                    head = found.setdefault(row.id, Head(row.updated_at))
                    if row.key is not None:
                        head.metadata[row.key] = row.value
    except Exception as exc:
        if is_database_error(exc):
            raise wrap_error(exc, store.engine.url) from exc
        raise
    return found
