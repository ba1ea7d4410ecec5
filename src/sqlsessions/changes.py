"""What a save must write: the difference between a session and its stored snapshot, and
which snapshot a session object stands on."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlsessions.errors import InvalidInputError
from sqlsessions.models import Message, MessageList, Session, check_metadata_entry
from sqlsessions.schema import json_text

_LOG_LOCK = threading.Lock()


class StoredMetadata(dict[str, str]):
    """Metadata as stored: each key's value as canonical JSON text. Never changed once built,
    so the whole dict's text and a private decoded copy of it are worked out once, for the
    saves that check whether a session's metadata is still exactly this."""

    _whole: tuple[str, dict[str, Any]] | None = None

    def whole(self) -> tuple[str, dict[str, Any]]:
        """(the canonical text of the whole dict, a fresh decoded copy of it)."""
        if self._whole is None:
            inner = ",".join([f"{json.dumps(key)}:{text}" for key, text in sorted(self.items())])
            text = f"{{{inner}}}"
            self._whole = (text, json.loads(text))
        return self._whole


@dataclass(frozen=True)
class StoredState:
    """What the database holds for a session, as of one version (never mutated).

    The stored messages and their seqs are the first `count` entries of two parallel
    append-only logs. A later state made by appending shares the logs (extending them in
    place) as long as nobody else extended them first, so recording an append costs
    nothing in the length of the conversation. `metadata_json` maps each key to its
    value's canonical JSON text, so changes are detected exactly (1, 1.0 and true differ).
    """

    session_id: str
    agent_id: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    version: int
    rewrite_version: int
    last_seq: int
    count: int
    seq_log: list[int]
    message_log: list[Message]
    metadata_json: StoredMetadata = field(default_factory=StoredMetadata)
    incarnation: str = ""
    """The token of the stored row this state belongs to: a session deleted (or expired) and
    created again under the same id restarts at version 1 with another token."""
    owner: str = ""
    """The owner of the stored session (its identity is (owner, session_id))."""

    def describes(self, head: Any) -> bool:
        """Whether a session row's head (incarnation, version) is exactly this state's."""
        return bool(head.incarnation == self.incarnation and head.version == self.version)

    def can_catch_up_to(self, head: Any) -> bool:
        """Whether only appends separate this state from `head` (same row, no rewrite since)."""
        return bool(
            head.incarnation == self.incarnation
            and self.version < head.version
            and head.rewrite_version <= self.version
        )

    @property
    def messages(self) -> list[Message]:
        """A copy of the stored messages."""
        return self.message_log[: self.count]

    @property
    def seqs(self) -> list[int]:
        """A copy of the stored messages' seqs."""
        return self.seq_log[: self.count]

    def extended(self, seqs: list[int], messages: list[Message], **changes: Any) -> StoredState:
        """A later state: these messages appended (and the given fields changed)."""
        with _LOG_LOCK:
            if len(self.message_log) == self.count:
                seq_log, message_log = self.seq_log, self.message_log
                seq_log.extend(seqs)
                message_log.extend(messages)
            else:  # another state already grew the shared logs: branch off
                seq_log = self.seq_log[: self.count] + seqs
                message_log = self.message_log[: self.count] + messages
        # dataclasses.replace re-runs every field through __init__; a copy of the fields
        # costs a third of that, on every save and append.
        later = object.__new__(StoredState)
        vars(later).update(vars(self))
        vars(later).update(
            seq_log=seq_log, message_log=message_log, count=self.count + len(messages), **changes
        )
        return later


@dataclass(frozen=True)
class SavePlan:
    """The rows one save writes.

    Messages kept are the stored seqs in [keep_from, keep_to]; everything outside that
    range is deleted when `delete_outside` is set. `new_messages` are inserted after
    `last_seq`.
    """

    delete_outside: bool
    kept_start: int
    """Index (in the stored list) of the first kept message."""
    keep_from: int
    keep_to: int
    kept: int
    new_messages: list[Message]
    metadata_upserts: dict[str, str]
    metadata_deletes: list[str]
    rewrites: bool
    """True when this save does more than append (the cache cannot catch up by appending)."""


def metadata_as_json(
    metadata: dict[str, Any], stored: StoredMetadata | None = None
) -> StoredMetadata:
    """Each metadata value as canonical JSON text; InvalidInputError names a bad key or value.

    `stored` (what a state holds) comes back as is when `metadata` still holds exactly that:
    one comparison and one encoding of the whole dict instead of checking each value."""
    if stored is not None and _holds_exactly(metadata, stored):
        return stored
    if not isinstance(metadata, dict):
        raise InvalidInputError("metadata", "must be a dict of string keys to JSON values")
    encoded = StoredMetadata()
    for key, value in metadata.items():
        check_metadata_entry(key, value)
        encoded[key] = json_text(value)
    return encoded


def _holds_exactly(metadata: Any, stored: StoredMetadata) -> bool:
    """Whether `metadata` is the stored metadata: equal to a decoded copy of it (so every key,
    at any depth, is a string) and encoding to the same text (so 1, 1.0 and true differ)."""
    if type(metadata) is not dict or len(metadata) != len(stored):
        return False
    text, values = stored.whole()
    try:
        return bool(metadata == values) and json_text(metadata) == text
    except Exception:  # a value that cannot be compared or encoded: let the full check say
        return False


def check_new_messages(new_messages: list[Message], offset: int) -> None:
    """Reject anything in the message list that is not a Message."""
    for position, message in enumerate(new_messages, start=offset):
        if not isinstance(message, Message):
            raise InvalidInputError(
                f"messages[{position}]", f"must be a Message, not {type(message).__name__}"
            )


def _common_prefix(old: list[Message], start: int, current: list[Message]) -> int:
    limit = min(len(old) - start, len(current))
    if old[start : start + limit] == current[:limit]:
        return limit
    n = 0
    while n < limit and old[start + n] == current[n]:
        n += 1
    return n


def _kept_window(old: list[Message], current: list[Message]) -> tuple[int, int]:
    """(k, j): the stored messages old[k:k+j] that open the current list unchanged."""
    n_old = len(old)
    if current[:n_old] == old:  # unchanged or appended to: the hot path, compared in C
        return 0, n_old
    if not current or not old:
        return 0, 0
    dropped = n_old - len(current)
    if dropped > 0 and current == old[dropped:]:  # trim
        return dropped, len(current)
    best = (0, _common_prefix(old, 0, current))
    first = current[0]
    for k, message in enumerate(old):
        if k and (message is first or message == first):
            j = _common_prefix(old, k, current)
            if j > best[1]:
                best = (k, j)
            if k + j == n_old:
                break
    return best


def plan_save(state: StoredState, session: Session) -> SavePlan:
    """The minimal writes that turn `state` into `session`."""
    current = session.messages
    if not isinstance(current, list):
        raise InvalidInputError("messages", "must be a list of Message")
    n_old = state.count
    unchanged = current.unchanged_prefix(state) if isinstance(current, MessageList) else 0
    if unchanged >= n_old and len(current) >= n_old:  # only appended to: no need to compare
        k, j = 0, n_old
    else:
        k, j = _kept_window(state.messages, current)
    new_messages = current[j:]
    check_new_messages(new_messages, j)
    delete_outside = not (k == 0 and j == n_old)
    if j:
        keep_from, keep_to = state.seq_log[k], state.seq_log[k + j - 1]
    else:
        keep_from, keep_to = state.last_seq + 1, state.last_seq  # an empty range: drop all
    metadata_json = metadata_as_json(session.metadata, state.metadata_json)
    upserts = {
        key: text for key, text in metadata_json.items() if state.metadata_json.get(key) != text
    }
    deletes = [key for key in state.metadata_json if key not in metadata_json]
    rewrites = (
        delete_outside
        or bool(upserts)
        or bool(deletes)
        or session.agent_id != state.agent_id
        or session.created_at != state.created_at
    )
    return SavePlan(
        delete_outside=delete_outside,
        kept_start=k,
        keep_from=keep_from,
        keep_to=keep_to,
        kept=j,
        new_messages=new_messages,
        metadata_upserts=upserts,
        metadata_deletes=deletes,
        rewrites=rewrites,
    )


def checkpoint(messages: list[Message], token: object) -> None:
    """Mark the message list clean as of the save being planned (before any statement runs,
    so edits made while the save is in flight count as changes for the next one)."""
    if isinstance(messages, MessageList):
        messages.mark_clean(token)


def state_of(session: Session) -> StoredState | None:
    """The stored snapshot a session object was loaded or last saved at, if any."""
    state = session._stored
    if (
        isinstance(state, StoredState)
        and state.session_id == session.id
        and state.owner == session.owner
    ):
        return state
    return None


def session_from_state(state: StoredState) -> Session:
    """A new Session object holding exactly what `state` describes."""
    messages = MessageList(state.messages)
    messages.mark_clean(state)
    session = Session.model_construct(
        id=state.session_id,
        agent_id=state.agent_id,
        owner=state.owner,
        messages=messages,
        created_at=state.created_at,
        updated_at=state.updated_at,
        metadata={key: json.loads(value) for key, value in state.metadata_json.items()},
    )
    session._stored = state
    return session
