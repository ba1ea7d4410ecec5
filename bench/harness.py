"""Measuring: run sizes, timing loops (warm-up, interleaving, medians), result rows, and
counting statements and PostgreSQL round trips of one store call."""

from __future__ import annotations

import gc
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Engine, event

# --- how much to run ----------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Sizes and repeat counts of one run (full, or `--quick` for smoke runs)."""

    quick: bool
    save_sizes: tuple[int, ...] = (10, 100, 1_000, 10_000)
    copies_small: int = 10
    """Sessions per size below 10,000 messages, used in rotation so N grows little."""
    copies_large: int = 4
    warmup: int = 10
    repeats: int = 150
    load_messages: int = 1_000
    list_sessions: int = 1_000_000
    reap_expired: int = 60_000
    reap_live_sessions: int = 20
    saver_interval_s: float = 0.005
    idle_seconds: float = 3.0

    def copies(self, n: int) -> int:
        return self.copies_large if n >= 10_000 else self.copies_small

    @classmethod
    def for_run(cls, quick: bool) -> Settings:
        if not quick:
            return cls(quick=False)
        return cls(
            quick=True,
            copies_small=2,
            copies_large=2,
            warmup=2,
            repeats=10,
            list_sessions=100_000,
            reap_expired=5_000,
            reap_live_sessions=5,
            idle_seconds=1.0,
        )


# --- statistics ---------------------------------------------------------------------------


@dataclass
class Stats:
    """Summary of timing samples, in nanoseconds."""

    median: float
    p10: float
    p90: float
    n: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        if not samples:
            raise ValueError("no samples")
        ordered = sorted(samples)

        def pick(q: float) -> float:
            return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])

        return cls(statistics.median(ordered), pick(0.10), pick(0.90), len(ordered))


def timed(action: Callable[[], Any]) -> int:
    """Nanoseconds one call of `action` takes."""
    start = time.perf_counter_ns()
    action()
    return time.perf_counter_ns() - start


def interleaved(
    contenders: dict[str, Callable[[int], int]], warmup: int, repeats: int, block: int = 5
) -> dict[str, Stats]:
    """Time every contender `repeats` times, interleaved in blocks, after `warmup` calls.

    Each contender is called with a running call number and returns the nanoseconds of
    the part it times (so preparation such as appending to the session is excluded).

    Rounds run every contender once, in a fresh random order, as a block of `block`
    consecutive calls; the first call of each block is discarded because it pays for
    whatever ran before (a 100 ms blob save leaves CPU caches cold, and the library's
    much larger code path suffers from that more than a raw driver call). Interleaving
    rounds spreads machine drift (disk, neighbours) evenly over all contenders.
    """
    names = list(contenders)
    samples: dict[str, list[int]] = {name: [] for name in names}
    kept_per_round = max(1, block - 1)
    warmup_rounds = -(-warmup // block)
    rounds = warmup_rounds + -(-repeats // kept_per_round)
    rng = random.Random(1)
    call = 0
    gc.collect()
    for r in range(rounds):
        rng.shuffle(names)
        for name in names:
            for j in range(block):
                elapsed = contenders[name](call)
                call += 1
                if r >= warmup_rounds and (j > 0 or block == 1):
                    samples[name].append(elapsed)
    return {name: Stats.of(values) for name, values in samples.items()}


# --- result rows --------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the results table.

    `unit` says how `ours` / `baseline` read: "ns" (a median time), "per_s" (a rate),
    "count". `met` is None when the row has no target (context) or could not run.
    """

    scenario: str
    operation: str
    dialect: str
    ours: float | None
    baseline: float | None
    baseline_name: str
    ratio: float | None
    target: str
    met: bool | None
    unit: str = "ns"
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def ratio(ours: float | None, baseline: float | None) -> float | None:
    if ours is None or baseline is None or baseline == 0:
        return None
    return ours / baseline


def not_implemented(scenario: str, operation: str, dialect: str, method: str, target: str) -> Row:
    """The row for a Store method that does not exist (yet)."""
    return Row(
        scenario,
        operation,
        dialect,
        None,
        None,
        "",
        None,
        target,
        None,
        note=f"not implemented (Store.{method} missing)",
    )


# --- counting what one store call sends ---------------------------------------------------

_TX_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


class EngineProbe:
    """Watches a store's engine: the SQL it executes and, on PostgreSQL, its round trips.

    Attach it right after the Store is created (before its first call), so that every
    pooled psycopg connection is known and can be traced at the protocol level.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._dbapi_connections: list[Any] = []
        self._tracing: _Trace | None = None
        event.listen(engine, "connect", self._on_connect)

    def _on_connect(self, dbapi_connection: Any, _record: Any) -> None:
        self._dbapi_connections.append(dbapi_connection)
        if self._tracing is not None:  # opened while counting (the store holds another)
            self._tracing.add(dbapi_connection)

    def count(self, action: Callable[[], Any]) -> dict[str, Any]:
        """Run `action` once and report what it sent to the database.

        - `queries`: statements through SQLAlchemy, transaction control excluded.
        - `statements`: their SQL (first 100 characters).
        - `event_round_trips` (PostgreSQL): queries + the BEGIN psycopg sends before the
          first one + COMMIT/ROLLBACK, from SQLAlchemy events (misses the pool's pre-ping).
        - `wire_round_trips` (PostgreSQL): from a libpq protocol trace of the store's
          connections: every switch from sending to receiving is one round trip. This
          includes what SQLAlchemy events cannot see (e.g. a pool pre-ping).
        - `sent`: what went to the database, in order (SQLite: statements and COMMIT;
          PostgreSQL: one label per round trip).
        """
        sql: list[str] = []
        tx = {"begin": 0, "end": 0}

        def on_execute(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
            sql.append(" ".join(statement.split()))

        def on_begin(conn: Any) -> None:
            if not _autocommit(conn):
                tx["begin"] += 1

        def on_end(conn: Any) -> None:
            if not _autocommit(conn):
                tx["end"] += 1

        listeners = [
            ("before_cursor_execute", on_execute),
            ("begin", on_begin),
            ("commit", on_end),
            ("rollback", on_end),
        ]
        for name, fn in listeners:
            event.listen(self.engine, name, fn)
        try:
            connections = self._dbapi_connections if self.dialect == "postgresql" else []
            with wire_trace(connections) as read_trace:
                self._tracing = read_trace if self.dialect == "postgresql" else None
                try:
                    action()
                finally:
                    self._tracing = None
            trace = read_trace()
        finally:
            for name, fn in listeners:
                event.remove(self.engine, name, fn)
        queries = [s for s in sql if not s.upper().startswith(_TX_CONTROL)]
        result: dict[str, Any] = {
            "queries": len(queries),
            "statements": [s[:100] for s in sql],
        }
        if self.dialect == "postgresql":
            result["event_round_trips"] = len(queries) + tx["begin"] + tx["end"]
            result["wire_round_trips"] = wire_round_trips(trace)
            result["wire_messages"] = [line[:200] for line in trace if line.startswith("F\t")]
            result["sent"] = wire_labels(trace, queries)
        else:
            sent = [_verb(s) for s in sql]
            if tx["begin"] and not any(label.startswith("BEGIN") for label in sent):
                sent.insert(0, "BEGIN")  # issued on the raw DB-API cursor, unseen by events
            result["sent"] = sent + ["COMMIT"] * tx["end"]
        return result


def _autocommit(conn: Any) -> bool:
    try:
        return bool(conn.connection.dbapi_connection.autocommit)
    except AttributeError:
        return False


def wire_round_trips(trace: list[str]) -> int:
    """Round trips in a libpq trace: each run of frontend (F) messages answered by the server."""
    trips = 0
    sending = False
    for line in trace:
        if line.startswith("F\t"):
            sending = True
        elif line.startswith("B\t") and sending:
            trips += 1
            sending = False
    return trips


class _Trace:
    """The trace of a `wire_trace` block: call it for the lines once the block has ended;
    `add` traces one more connection (one opened while the block runs)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.traced: list[Any] = []
        self.lines: list[str] = []

    def add(self, conn: Any) -> None:
        import psycopg

        if conn.closed or any(conn is seen for seen in self.traced):
            return
        conn.pgconn.trace(self.fd)
        conn.pgconn.set_trace_flags(
            psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE
        )
        self.traced.append(conn)

    def __call__(self) -> list[str]:
        return self.lines


@contextmanager
def wire_trace(connections: Sequence[Any]) -> Iterator[_Trace]:
    """Trace the libpq protocol of psycopg `connections` while the block runs; the yielded
    function returns the trace lines once the block has ended."""
    fd, path = tempfile.mkstemp(prefix="sqlsessions-bench-trace-")
    trace = _Trace(fd)
    try:
        for conn in connections:
            trace.add(conn)
        try:
            yield trace
        finally:
            for conn in trace.traced:
                if not conn.closed:
                    conn.pgconn.untrace()
        with open(path, encoding="utf-8", errors="replace") as trace_file:
            trace.lines.extend(trace_file.read().splitlines())
    finally:
        os.close(fd)
        os.unlink(path)


def _verb(statement: str) -> str:
    words = statement.split()
    if not words:
        return "?"
    if words[0].upper() == "BEGIN" and len(words) > 1:
        return f"BEGIN {words[1].upper()}"
    return words[0].upper()


def wire_labels(trace: list[str], queries: list[str]) -> list[str]:
    """One label per round trip of a libpq trace: the text of a simple query (BEGIN,
    COMMIT, a ping), else the verb of the next statement SQLAlchemy executed."""
    labels: list[str] = []
    pending = iter(queries)
    run: list[str] = []
    for line in [*trace, "B\tend"]:
        if line.startswith("F\t"):
            run.append(line)
        elif line.startswith("B\t") and run:
            simple = [r for r in run if "\tQuery\t" in r]
            if simple:
                labels.append(simple[0].split("\tQuery\t", 1)[1].strip().strip('"')[:20])
            else:
                labels.append(_verb(next(pending, "?")))
            run = []
    return labels
