"""Import and export of sessions in the Go package's JSON form (JSON, JSON arrays, JSONL).

Import is idempotent: each document *replaces* the stored session of the same id with
exactly its content, and a session already identical to its document is not written at
all (its version and expiry stay as they are). Export writes one ``Session.to_json()``
per line, ordered by session id, so export -> import into an empty database reproduces
the sessions exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sqlsessions.errors import ConflictError, InvalidInputError, SessionNotFoundError
from sqlsessions.models import Session
from sqlsessions.queries import MAX_PAGE_SIZE
from sqlsessions.store import Store

__all__ = [
    "BadRecord",
    "ImportCounts",
    "Record",
    "export_lines",
    "import_session",
    "read_records",
    "same_content",
    "session_from_document",
]

Outcome = Literal["imported", "unchanged"]
_CONFLICT_RETRIES = 5


@dataclass(frozen=True)
class Record:
    """One session document read from a file, with the line it starts on."""

    path: str
    line: int
    document: Any


@dataclass(frozen=True)
class BadRecord:
    """Something in a file that is not a session document: where, and why."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class ImportCounts:
    """What an import did."""

    imported: int = 0
    unchanged: int = 0
    skipped: int = 0
    problems: list[BadRecord] = field(default_factory=list)


# --- reading files -----------------------------------------------------------------------


def read_records(path: str | Path, text: str | None = None) -> Iterator[Record | BadRecord]:
    """The session documents in a file, in order, each with its line number.

    The file may hold one JSON document, a JSON array of documents, a JSON object mapping
    keys to documents (a key-value store dump), or JSON Lines (one document per line; blank
    lines are ignored). A document may also be given as a JSON string holding the session's
    JSON (as a key-value store keeps it).
    """
    name = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            yield BadRecord(name, 0, f"cannot read file: {exc}")
            return
    stripped = text.lstrip()
    start_line = text.count("\n", 0, len(text) - len(stripped)) + 1
    if stripped.startswith("["):
        yield from _read_array(name, text)
        return
    try:
        whole = json.loads(text)
    except ValueError:
        yield from _read_lines(name, text)
        return
    if (
        isinstance(whole, dict)
        and "id" not in whole
        and whole
        and all(isinstance(value, (dict, str)) for value in whole.values())
    ):
        for value in whole.values():  # a dump of a key-value store: key -> session
            yield Record(name, start_line, value)
        return
    yield Record(name, start_line, whole)


def _read_lines(name: str, text: str) -> Iterator[Record | BadRecord]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield Record(name, number, json.loads(line))
        except ValueError as exc:
            yield BadRecord(name, number, f"not valid JSON: {exc}")


def _read_array(name: str, text: str) -> Iterator[Record | BadRecord]:
    """Each element of a top-level JSON array, with the line it starts on."""
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    while True:
        pos = _skip_space(text, pos)
        if pos < len(text) and text[pos] == "]":
            return
        line = text.count("\n", 0, pos) + 1
        try:
            document, pos = decoder.raw_decode(text, pos)
        except ValueError as exc:
            yield BadRecord(name, line, f"not valid JSON ({exc}); the rest of the file is skipped")
            return
        yield Record(name, line, document)
        pos = _skip_space(text, pos)
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos >= len(text) or text[pos] != "]":
            line = text.count("\n", 0, pos) + 1
            yield BadRecord(name, line, "expected ',' or ']' in the JSON array; rest skipped")
            return


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def session_from_document(document: Any) -> Session:
    """The Session a document describes; InvalidInputError says what is wrong with it."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            raise InvalidInputError("document", "a string that is not session JSON") from None
    if not isinstance(document, dict):
        raise InvalidInputError(
            "document", f"must be a JSON object (a session), not {type(document).__name__}"
        )
    if "id" not in document:
        raise InvalidInputError("id", "missing")
    return Session.model_validate(document)


# --- importing ----------------------------------------------------------------------------


def _content(session: Session) -> Any:
    """What import compares: the JSON form, parsed (key order and zone offsets do not matter)."""
    return json.loads(session.to_json())


def same_content(a: Session, b: Session) -> bool:
    """True when both sessions have the same JSON form (timestamps compared as instants)."""
    return bool(_content(a) == _content(b))


def import_session(store: Store, incoming: Session, *, exists: bool | None = None) -> Outcome:
    """Make the stored session `incoming.id` exactly `incoming`.

    Returns "unchanged" (nothing written) when it already is, else "imported". `exists`
    (when the caller knows) spares the lookup for a session that is not stored yet.
    """
    for attempt in range(_CONFLICT_RETRIES):
        try:
            return _replace(store, incoming, exists)
        except ConflictError:
            if attempt == _CONFLICT_RETRIES - 1:
                raise
            exists = None  # someone wrote it meanwhile: look again
    raise AssertionError("unreachable")  # pragma: no cover


def _replace(store: Store, incoming: Session, exists: bool | None) -> Outcome:
    stored: Session | None = None
    if exists is not False:
        try:
            stored = store.get_if_exists(incoming.id)
        except SessionNotFoundError:
            stored = None
    if stored is None:
        store.save(incoming)
        return "imported"
    if same_content(stored, incoming):
        return "unchanged"
    stored.agent_id = incoming.agent_id
    stored.messages = list(incoming.messages)
    stored.metadata = json.loads(json.dumps(incoming.metadata))
    stored.created_at = incoming.created_at
    stored.updated_at = incoming.updated_at
    store.save(stored)
    return "imported"


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


def export_lines(store: Store, agent_id: str | None = None) -> Iterator[str]:
    """Each live session (of `agent_id`, if given) as one line of JSON, ordered by id."""
    for session_id in _ids(store, agent_id):
        try:
            session = store.get_if_exists(session_id)
        except SessionNotFoundError:  # deleted or expired while exporting
            continue
        # Metadata keys sorted: the database does not keep their order, and an export
        # should be the same text every time for the same data.
        session.metadata = dict(sorted(session.metadata.items()))
        yield session.to_json()
