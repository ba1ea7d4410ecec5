"""Pool connections the direct executors keep checked out between operations."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine
from sqlalchemy.pool import QueuePool

C = TypeVar("C")

_forks = [0]  # how many forks this process descends from (held connections are per process)


def _forked() -> None:
    _forks[0] += 1


os.register_at_fork(after_in_child=_forked)


class HeldConnections(Generic[C]):
    """Idle connections an executor keeps checked out of the engine's pool, to reuse.

    A checkout and checkin through SQLAlchemy's pool (its events, the reset-on-return
    rollback, the queue's lock; on asyncio a greenlet hop each way) cost ~12 us per operation
    on the sync path and ~35 us on asyncio: as much as the rest of the store's Python for a
    small write. An operation that finds a connection here pays neither.

    Held only where nobody can tell the difference: on an engine the store created, whose
    QueuePool neither pings nor recycles connections (`pool_pre_ping`, `pool_recycle`) and
    has no checkout, checkin or reset listener; at most `pool size - 1` at once, so the pool
    always has a connection for anyone else; and none while an operation of the store waits
    for the pool (the connection goes back to the pool for it). After a fork the parent's
    connections are never used nor closed; after `engine.dispose()` none is kept again.
    """

    def __init__(
        self, engine: Engine, owned: bool, engine_options: Mapping[str, Any] | None
    ) -> None:
        """`engine`: the sync engine (an asyncio engine's `sync_engine`); `owned`: whether the
        store created it from `engine_options`."""
        pool = engine.pool
        engine_options = engine_options or {}
        limit = pool.size() - 1 if isinstance(pool, QueuePool) else 0
        holdable = (
            owned
            and limit > 0
            and not engine_options.get("pool_pre_ping")
            and (engine_options.get("pool_recycle") or -1) < 0
        )
        self._engine = engine
        self._pool = pool if holdable else None
        self._limit = limit if holdable else 0
        self._idle: list[C] = []
        self._waiting: list[None] = []  # an entry per operation waiting on the pool
        self._lock = threading.Lock()
        self._forks = _forks[0]
        self._parents: list[C] = []  # held before a fork: the parent's, left alone

    def take(self) -> tuple[C | None, list[C]]:
        """(an idle held connection or None, connections the caller must return to the pool:
        all of them once holding them is no longer invisible, e.g. a listener was added).
        With None, check one out of the pool inside `waiting()`."""
        if not self._idle:
            return None, []
        with self._lock:
            if self._forks != _forks[0]:
                self._parents += self._idle
                self._idle = []
                self._forks = _forks[0]
            if not self._quiet():
                released, self._idle = self._idle, []
                return None, released
            return (self._idle.pop() if self._idle else None), []

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Around a checkout from the pool: connections finished meanwhile go to the pool."""
        self._waiting.append(None)
        try:
            yield
        finally:
            self._waiting.pop()

    def keep(self, connection: C) -> bool:
        """Hold `connection` (True), or leave it to the caller to return to the pool (False)."""
        if self._waiting or not self._quiet():
            return False
        with self._lock:
            if len(self._idle) >= self._limit or self._forks != _forks[0]:
                return False
            self._idle.append(connection)
            return True

    def _quiet(self) -> bool:
        """Whether holding connections goes unnoticed: holding is allowed at all, the engine
        still has the pool it had, and nobody listens to that pool's checkouts or checkins."""
        pool = self._pool
        if pool is None or self._engine.pool is not pool:
            return False
        events = pool.dispatch
        return not (events.checkout or events.checkin or events.reset)

    def release(self) -> list[C]:
        """Every held connection, no longer held: the caller returns them to the pool."""
        with self._lock:
            if self._forks != _forks[0]:
                return []
            released, self._idle = self._idle, []
            return released
