"""The process-local session cache: stored snapshots, least recently used evicted first."""

from __future__ import annotations

import threading
from collections import OrderedDict

from sqlsessions.changes import StoredState

DEFAULT_CACHE_SIZE = 1024


class SessionCache:
    """Up to `capacity` stored-session snapshots (0 disables caching); thread-safe.

    An entry is only ever a hint: the store validates it against the database (one
    primary-key lookup) before using it, so a stale entry costs a reload, never stale data.
    """

    def __init__(self, capacity: int = DEFAULT_CACHE_SIZE) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, StoredState] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, session_id: str) -> StoredState | None:
        with self._lock:
            state = self._entries.get(session_id)
            if state is not None:
                self._entries.move_to_end(session_id)
            return state

    def put(self, state: StoredState) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._entries[state.session_id] = state
            self._entries.move_to_end(state.session_id)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def discard(self, session_id: str) -> None:
        with self._lock:
            self._entries.pop(session_id, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
