"""Sweeping expired sessions: one batch as an operation, and background loops (thread, task)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlsessions import statements as sql
from sqlsessions.distribute import qualified
from sqlsessions.errors import InvalidInputError
from sqlsessions.schema import sessions
from sqlsessions.steps import Operation, Steps, Transaction, utcnow

logger = logging.getLogger("sqlsessions.reaper")

DEFAULT_BATCH_SIZE = 1000
MAX_BATCH_SIZE = 1_000_000
"""The most sessions one reaper transaction deletes (larger batches only hold locks longer)."""
MAX_INTERVAL_SECONDS = 7 * 24 * 3600


def check_interval(interval: float) -> float:
    """`interval` in seconds if a positive, finite number, else InvalidInputError."""
    if (
        isinstance(interval, bool)
        or not isinstance(interval, (int, float))
        or not 0 < interval <= MAX_INTERVAL_SECONDS  # also rejects NaN and huge integers
        or not math.isfinite(float(interval))
    ):
        raise InvalidInputError(
            "interval", f"must be a positive number of seconds, at most {MAX_INTERVAL_SECONDS}"
        )
    return float(interval)


def check_batch_size(batch_size: int) -> int:
    """`batch_size` if an integer from 1 to MAX_BATCH_SIZE, else InvalidInputError."""
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or not 1 <= batch_size <= MAX_BATCH_SIZE
    ):
        raise InvalidInputError(
            "batch_size", f"must be an integer from 1 to {MAX_BATCH_SIZE}, not {batch_size!r}"
        )
    return batch_size


@dataclass(frozen=True)
class ReapedBatch:
    """What one reaper batch did: sessions deleted, and whether the sweep is over (fewer
    expired sessions were found than a batch holds)."""

    deleted: int
    exhausted: bool


def reap_batch(
    dialect: str, batch_size: int, *, citus: bool = False, schema: str | None = None
) -> Operation[ReapedBatch]:
    """Delete up to `batch_size` expired sessions with all their rows, in one short transaction
    (on Citus shard by shard: see `reap_batch_on_citus`; `schema` holds the tables)."""
    check_batch_size(batch_size)
    if citus:
        return reap_batch_on_citus(batch_size, qualified(sessions.name, schema))
    statement = sql.reap_batch(dialect)

    def steps(tx: Transaction) -> Steps[ReapedBatch]:
        result = yield statement, {"now": utcnow(), "batch_size": batch_size}
        deleted = int(result.rowcount)
        # SKIP LOCKED gives concurrent reapers disjoint batches: a short batch means done.
        return ReapedBatch(deleted, exhausted=deleted < batch_size)

    return Operation(steps, writes=True, autocommit=dialect == "postgresql")


def reap_batch_on_citus(batch_size: int, sessions_table: str) -> Operation[ReapedBatch]:
    """Citus: every statement touches one shard, as a locking sweep across shards cannot.

    The candidates are read without locks; the coordinator tells which shard holds each
    one; then one DELETE per shard removes that shard's candidates with their expiry
    re-checked in the DELETE itself: a session revived meanwhile no longer matches and
    survives, and of several reapers taking the same candidate only one deletes it (the
    others find nothing). The deletes travel together (one pipelined round trip with
    psycopg) in one short transaction, shard after shard in a fixed order, so reapers wait
    for each other instead of deadlocking. Writers of live sessions never wait: a row
    whose expiry does not match is neither deleted nor locked.
    """

    def steps(tx: Transaction) -> Steps[ReapedBatch]:
        now = utcnow()
        candidates = (yield sql.select_expired_ids, {"now": now, "batch_size": batch_size}).all()
        if not candidates:
            return ReapedBatch(0, exhausted=True)
        ids = [row.id for row in candidates]
        placed = (yield sql.select_shards_of_sessions, {"table": sessions_table, "ids": ids}).all()
        by_shard: defaultdict[int, list[str]] = defaultdict(list)
        for row in placed:
            by_shard[row.shard].append(row.id)
        result = yield (
            sql.delete_expired_sessions_among,
            [{"ids": sorted(by_shard[shard]), "now": now} for shard in sorted(by_shard)],
        )
        # Another reaper may have deleted some candidates first: the sweep goes on while full
        # batches of candidates are found, whatever this one deleted of them.
        return ReapedBatch(int(result.rowcount), exhausted=len(candidates) < batch_size)

    return Operation(steps, writes=True)


class ReaperThread:
    """A daemon thread calling `sweep()` every `interval` seconds until `stop()`.

    A failing sweep is logged and retried at the next interval; it never ends the thread.
    """

    def __init__(self, sweep: Callable[[], int], interval: float) -> None:
        self.interval = check_interval(interval)
        self.reaped = 0
        self._sweep = sweep
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sqlsessions-reaper", daemon=True)

    def start(self) -> ReaperThread:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.reaped += self._sweep()
            except Exception:
                logger.exception("expired-session sweep failed; retrying in %.1fs", self.interval)
            self._stopping.wait(self.interval)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Ask the loop to end and wait up to `timeout` seconds for the current sweep."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)


class ReaperTask:
    """An asyncio task awaiting `sweep()` every `interval` seconds until `await stop()`."""

    def __init__(self, sweep: Callable[[], Awaitable[int]], interval: float) -> None:
        self.interval = check_interval(interval)
        self.reaped = 0
        self._sweep = sweep
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> ReaperTask:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="sqlsessions-reaper")
        return self

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.reaped += await self._sweep()
            except Exception:
                logger.exception("expired-session sweep failed; retrying in %.1fs", self.interval)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self, timeout: float | None = 10.0) -> None:
        """Ask the loop to end and wait up to `timeout` seconds for the current sweep."""
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except asyncio.TimeoutError:
                self._task.cancel()
