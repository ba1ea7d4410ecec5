"""A cached session is the same session only if it is the same incarnation at the same version.

A session deleted (or expired) and created again under the same id starts over at version 1,
so a version alone cannot tell the new session from the one a cache still holds.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from sqlsessions import ConflictError, Message, Role, Session


def contents(session: Any) -> list[str]:
    return [message.content for message in session.messages]


def write(store: Any, session_id: str, *texts: str) -> None:
    """Load (or create) the session, add one message per text, save."""
    session = store.get(session_id)
    for content in texts:
        session.add_message(Role.USER, content)
    store.save(session)


def expire_now(url: str, session_id: str) -> None:
    """Make the session expire (as if its TTL ran out) without waiting for it."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE sessions SET expires_at = :past WHERE id = :sid"),
                {"past": datetime.now(timezone.utc) - timedelta(hours=1), "sid": session_id},
            )
    finally:
        engine.dispose()


def test_a_cache_holding_a_deleted_incarnation_at_the_same_version_serves_the_new_one(
    open_store: Any,
) -> None:
    a, b = open_store(), open_store()
    write(a, "reused", "old-1", "old-2")
    assert contents(b.get("reused")) == ["old-1", "old-2"]  # b caches the first incarnation
    a.delete("reused")
    write(a, "reused", "new-1", "new-2")  # the same number of versions as the old one
    assert contents(b.get("reused")) == ["new-1", "new-2"]
    assert contents(b.get_if_exists("reused")) == ["new-1", "new-2"]


def test_a_cache_never_splices_a_new_incarnation_with_more_versions_onto_the_old(
    open_store: Any,
) -> None:
    a, b = open_store(), open_store()
    write(a, "reused", "old-1", "old-2")
    b.get("reused")
    a.delete("reused")
    write(a, "reused", "new-1", "new-2")
    a.append("reused", Message(role=Role.USER, content="new-3"))  # only appends since v1
    assert contents(b.get("reused")) == ["new-1", "new-2", "new-3"]
    b.append("reused", Message(role=Role.USER, content="new-4"))
    assert contents(b.get("reused")) == ["new-1", "new-2", "new-3", "new-4"]


def test_a_session_expired_then_revived_by_append_in_the_same_store_shows_only_the_new(
    open_store: Any, migrated_url: str
) -> None:
    store = open_store()
    write(store, "revived", "expired-1", "expired-2")
    store.get("revived")  # cached
    expire_now(migrated_url, "revived")
    store.append("revived", Message(role=Role.USER, content="fresh"))
    assert contents(store.get("revived")) == ["fresh"]
    assert contents(open_store().get("revived")) == ["fresh"]


def test_the_documented_recovery_from_a_conflict_works_after_the_id_was_reused(
    open_store: Any,
) -> None:
    a, b = open_store(), open_store()
    write(a, "reused", "old-1", "old-2")
    mine = b.get("reused")
    a.delete("reused")
    write(a, "reused", "new-1", "new-2")
    mine.add_message(Role.USER, "mine")
    with pytest.raises(ConflictError):
        b.save(mine)
    # The recovery the ConflictError names: load again, re-apply the change, save.
    again = b.get("reused")
    again.add_message(Role.USER, "mine")
    b.save(again)
    assert contents(open_store().get("reused")) == ["new-1", "new-2", "mine"]


def test_a_session_loaded_from_an_earlier_incarnation_never_saves_over_the_new_one(
    open_store: Any,
) -> None:
    created = datetime(2026, 1, 1, tzinfo=timezone.utc)  # created_at is the user's to set
    a, b = open_store(), open_store()
    a.save(Session(id="reused", created_at=created, updated_at=created))
    mine = b.get("reused")
    a.delete("reused")
    theirs = Session(id="reused", created_at=created, updated_at=created)
    theirs.add_message(Role.USER, "theirs")
    a.save(theirs)  # a new incarnation at the same version, with the same created_at
    mine.add_message(Role.USER, "mine")
    with pytest.raises(ConflictError):
        b.save(mine)
    assert contents(open_store().get("reused")) == ["theirs"]
