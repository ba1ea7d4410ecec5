"""Import and export of sessions in the Go package's JSON form (JSON, JSON arrays, JSONL).

A session's owner travels as the key ``owner`` (omitted when it is the default owner ''; the
Go package ignores it): import writes each document into its own owner's scope (or into the
owner forced with ``owner=``), export writes the sessions of the store's scope.

Import is idempotent: each document *replaces* the stored session of the same id with
exactly its content, and a session already identical to its document is not written at
all (its version and expiry stay as they are). Export writes one ``Session.to_json()``
per line with one extra key, ``expires_at`` (RFC 3339, or null for never; the Go package
ignores it, import restores it), ordered by session id, so export -> import into an empty
database reproduces the sessions exactly. Files are read as a stream (`record_reader`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal

from sqlalchemy import update

from sqlsessions.changes import state_of
from sqlsessions.engine import is_database_error, wrap_error
from sqlsessions.errors import (
    ConflictError,
    InvalidInputError,
    SessionNotFoundError,
    SqlSessionsError,
    StorageError,
)
from sqlsessions.models import Session
from sqlsessions.queries import MAX_PAGE_SIZE
from sqlsessions.record_reader import MAX_RECORD_CHARS, BadRecord, Record, RecordReader
from sqlsessions.schema import sessions as sessions_table
from sqlsessions.store import Store
from sqlsessions.timestamps import format_timestamp, parse_timestamp
from sqlsessions.validation import check_owner

__all__ = [
    "EXPIRES_AT_KEY",
    "MAX_RECORD_CHARS",
    "BadRecord",
    "ImportCounts",
    "Record",
    "export_line",
    "export_lines",
    "import_records",
    "import_session",
    "read_records",
    "same_content",
    "session_from_document",
]

Outcome = Literal["imported", "unchanged"]
_CONFLICT_RETRIES = 5


# --- reading files -----------------------------------------------------------------------


def read_records(
    path: str | Path,
    source: IO[bytes] | None = None,
    *,
    max_record_chars: int = MAX_RECORD_CHARS,
) -> Iterator[Record | BadRecord]:
    """The session documents in a file (or in `source`, named `path`), streamed in order.

    See `sqlsessions.record_reader` for the formats and limits. A file that cannot be opened
    is one BadRecord at line 0.
    """
    name = str(path)
    if source is not None:
        yield from RecordReader(source, name, max_record_chars=max_record_chars)
        return
    try:
        with Path(path).open("rb") as file:
            yield from RecordReader(file, name, max_record_chars=max_record_chars)
    except OSError as exc:
        yield BadRecord(name, 0, f"cannot read file: {exc.strerror or exc}")


EXPIRES_AT_KEY = "expires_at"
"""The extra key an export adds to each session: when it expires (RFC 3339, or null for never).
The Go package ignores it; import restores it."""


class _Unset:
    """No `expires_at` in the document: the store's TTL applies as for any save."""


KEEP_TTL = _Unset()


def session_from_document(document: Any) -> Session:
    """The Session a document describes; InvalidInputError says what is wrong with it."""
    return _parse_document(document)[0]


def _parse_document(document: Any) -> tuple[Session, datetime | _Unset | None]:
    """The Session a document describes and the expiry it carries (KEEP_TTL if none)."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except (ValueError, RecursionError):
            raise InvalidInputError("document", "a string that is not session JSON") from None
    if not isinstance(document, dict):
        raise InvalidInputError(
            "document", f"must be a JSON object (a session), not {type(document).__name__}"
        )
    if "id" not in document:
        raise InvalidInputError("id", "missing")
    session = Session.model_validate(document)
    if EXPIRES_AT_KEY not in document:
        return session, KEEP_TTL
    raw = document[EXPIRES_AT_KEY]
    if raw is None:
        return session, None
    if not isinstance(raw, str):
        raise InvalidInputError(EXPIRES_AT_KEY, "must be an RFC 3339 timestamp string or null")
    try:
        return session, parse_timestamp(raw)
    except ValueError as exc:
        raise InvalidInputError(EXPIRES_AT_KEY, str(exc)) from None


# --- importing ----------------------------------------------------------------------------


def _content(session: Session) -> Any:
    """What import compares: the JSON form, parsed (key order and zone offsets do not matter)."""
    return json.loads(session.to_json())


def same_content(a: Session, b: Session) -> bool:
    """True when both sessions have the same JSON form (timestamps compared as instants)."""
    return bool(_content(a) == _content(b))


def import_session(
    store: Store,
    incoming: Session,
    *,
    exists: bool | None = None,
    expires_at: datetime | _Unset | None = KEEP_TTL,
) -> Outcome:
    """Make the stored session `incoming.id` exactly `incoming` (and its expiry `expires_at`,
    when given: None means never).

    Returns "unchanged" (nothing written) when it already is, else "imported". `exists`
    (when the caller knows) spares the lookup for a session that is not stored yet.
    """
    store = in_owner_scope(store, incoming.owner)
    for attempt in range(_CONFLICT_RETRIES):
        try:
            return _replace(store, incoming, exists, expires_at)
        except ConflictError:
            if attempt == _CONFLICT_RETRIES - 1:
                raise
            exists = None  # someone wrote it meanwhile: look again
    raise AssertionError("unreachable")  # pragma: no cover


def in_owner_scope(store: Store, owner: str) -> Store:
    """`store` itself when it works in `owner`'s scope, else a view scoped to `owner` (only the
    root store can make one: a store scoped to another owner raises InvalidInputError)."""
    if store.scope.owner == owner:
        return store
    return store.scoped(owner=owner)


def _replace(
    store: Store, incoming: Session, exists: bool | None, expires_at: datetime | _Unset | None
) -> Outcome:
    stored: Session | None = None
    if exists is not False:
        try:
            stored = store.get_if_exists(incoming.id)
        except SessionNotFoundError:
            stored = None
    if stored is None:
        store.save(incoming)
        _restore_expiry(store, incoming, expires_at)
        return "imported"
    if same_content(stored, incoming):
        if isinstance(expires_at, _Unset) or _expiry_of(stored) == expires_at:
            return "unchanged"
        _restore_expiry(store, stored, expires_at)
        return "imported"
    stored.agent_id = incoming.agent_id
    stored.messages = list(incoming.messages)
    stored.metadata = json.loads(json.dumps(incoming.metadata))
    stored.created_at = incoming.created_at
    stored.updated_at = incoming.updated_at
    store.save(stored)
    _restore_expiry(store, stored, expires_at)
    return "imported"


def _expiry_of(session: Session) -> datetime | None:
    """The expiry a session object was loaded or saved with (None: never expires)."""
    state = state_of(session)
    return None if state is None else state.expires_at


def _restore_expiry(store: Store, session: Session, expires_at: datetime | _Unset | None) -> None:
    """Give the just-saved `session` the expiry of the document it came from, if it had one."""
    if isinstance(expires_at, _Unset) or _expiry_of(session) == expires_at:
        return
    state = state_of(session)
    version = state.version if state is not None else None
    statement = (
        update(sessions_table)
        .where(
            sessions_table.c.id == session.id,
            sessions_table.c.owner == session.owner,
            sessions_table.c.version == version,
        )
        .values(expires_at=expires_at)
    )
    try:
        with store.engine.connect() as conn:
            conn = conn.execution_options(sqlsessions_writes=True)
            with conn.begin():
                changed = conn.execute(statement).rowcount
    except Exception as exc:
        if is_database_error(exc):
            raise wrap_error(exc, store.engine.url) from exc
        raise
    if changed != 1:
        raise ConflictError(f"session {session.id!r} changed while being imported")


@dataclass
class ImportCounts:
    """What an import did."""

    imported: int = 0
    unchanged: int = 0
    skipped: int = 0


def import_records(
    store: Store,
    records: Iterable[Record | BadRecord],
    report: Callable[[BadRecord], None],
    counts: ImportCounts | None = None,
    *,
    owner: str | None = None,
) -> ImportCounts:
    """Import each record in turn; a bad one is passed to `report`, counted and skipped.

    Each session goes to the owner its document names (key ``owner``, '' when absent), or
    to `owner` when given. A record is bad when it is not a valid session
    (InvalidInputError), belongs outside the store's scope, or keeps conflicting with
    concurrent writers; other errors (the database is gone) end the import.
    """
    if owner is not None:
        check_owner(owner)
    counts = counts or ImportCounts()
    for record in records:
        problem = (
            record if isinstance(record, BadRecord) else _import_one(store, record, counts, owner)
        )
        if problem is not None:
            counts.skipped += 1
            report(problem)
    return counts


def _import_one(
    store: Store, record: Record, counts: ImportCounts, owner: str | None
) -> BadRecord | None:
    try:
        session, expires_at = _parse_document(record.document)
        if owner is not None:
            session.owner = owner
        outcome = import_session(store, session, expires_at=expires_at)
    except (InvalidInputError, ConflictError) as exc:
        return BadRecord(record.path, record.line, str(exc))
    if outcome == "imported":
        counts.imported += 1
    else:
        counts.unchanged += 1
    return None


# --- exporting ----------------------------------------------------------------------------


def _ids(store: Store, agent_id: str | None) -> list[str]:
    """The ids of the live sessions (of `agent_id`), sorted."""
    ids: list[str] = []
    cursor = None
    while True:
        page = store.list_sessions(agent_id=agent_id, limit=MAX_PAGE_SIZE, cursor=cursor)
        ids.extend(item.id for item in page.sessions)
        cursor = page.next_cursor
        if cursor is None:
            return sorted(ids)


def export_line(session: Session) -> str:
    """A loaded session as one export line: its JSON form plus `expires_at`."""
    # Metadata keys sorted: the database does not keep their order, and an export
    # should be the same text every time for the same data.
    session.metadata = dict(sorted(session.metadata.items()))
    text = session.to_json()
    expires_at = _expiry_of(session)
    expiry = "null" if expires_at is None else json.dumps(format_timestamp(expires_at))
    return f'{text[:-1]},"{EXPIRES_AT_KEY}":{expiry}}}'


def export_lines(
    store: Store,
    agent_id: str | None = None,
    report: Callable[[str, SqlSessionsError], None] | None = None,
) -> Iterator[str]:
    """Each live session (of `agent_id`, if given) as one line of JSON, ordered by id.

    A session that cannot be read or written as JSON is passed to `report` (id, error) and
    left out; the export goes on with the rest.
    """
    for session_id in _ids(store, agent_id):
        try:
            session = store.get_if_exists(session_id)
            line = export_line(session)
        except SessionNotFoundError:  # deleted or expired while exporting
            continue
        except (SqlSessionsError, ValueError, RecursionError) as exc:
            if isinstance(exc, StorageError) and not _about_this_session(exc):
                raise
            error = exc if isinstance(exc, SqlSessionsError) else SqlSessionsError(str(exc))
            if report is not None:
                report(session_id, error)
            continue
        yield line


def _about_this_session(exc: StorageError) -> bool:
    """A storage error caused by one session's data (not by a lost connection)."""
    return not getattr(exc.__cause__, "connection_invalidated", False)
