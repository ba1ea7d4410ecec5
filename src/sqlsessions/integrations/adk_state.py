"""One read for the ADK listing: the metadata (ids and state) of many sessions at once.

``list_sessions`` must return each session's state; loading every session would read all its
events, so this reads only the ``session_metadata`` rows of the listed ids (a primary-key
range per id, co-located by ``session_id`` on Citus).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from sqlsessions import schema
from sqlsessions.aio import AsyncStore
from sqlsessions.engine import is_database_error, wrap_error

_CHUNK = 500


async def read_states(
    store: AsyncStore, session_ids: Sequence[str], prefix: str
) -> dict[str, dict[str, Any]]:
    """session id -> its metadata entries (``adk.*`` and `prefix`ed ones)."""
    table = schema.session_metadata
    found: dict[str, dict[str, Any]] = {}
    try:
        async with store.engine.connect() as conn:
            for start in range(0, len(session_ids), _CHUNK):
                chunk = list(session_ids[start : start + _CHUNK])
                rows = await conn.execute(
                    select(table.c.session_id, table.c.key, table.c.value).where(
                        table.c.session_id.in_(chunk)
                    )
                )
                for row in rows:
                    if row.key.startswith((prefix, "adk.")):
                        found.setdefault(row.session_id, {})[row.key] = row.value
    except Exception as exc:
        if is_database_error(exc):
            raise wrap_error(exc, store.engine.url) from exc
        raise
    return found
