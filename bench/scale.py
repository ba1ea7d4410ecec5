"""The SPEC §7 rows that need many sessions: listing a million sessions, and the reaper
under concurrent saves. Each runs in a database of its own, bulk-loaded by the raw driver.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from bench.baselines import HandReads, Raw, hand_reap
from bench.harness import Row, Stats, interleaved, not_implemented, ratio, timed
from bench.scenarios import TTL, Context, verify
from bench.seed import (
    MESSAGE_COLUMNS,
    SESSION_COLUMNS,
    analyze,
    bulk_insert,
    expired_rows,
    listing_rows,
    new_session,
    utcnow,
)
from sqlsessions import Role, Store, migrate

LIST_TARGET_NS = 10_000_000
REAP_TARGET_PER_S = 20_000
MESSAGES_PER_EXPIRED_SESSION = 10


# --- row 5: list_sessions at a million sessions -------------------------------------------


def run_list(ctx: Context) -> list[Row]:
    target = "≤ 10 ms (PostgreSQL)"
    count = ctx.settings.list_sessions
    operation = f"list_sessions first page of 100 ({count:,} sessions)"
    if not hasattr(Store, "list_sessions"):
        return [not_implemented("list", operation, ctx.dialect, "list_sessions", target)]
    with ctx.new_database("list") as url:
        migrate(url)
        raw = Raw(url)
        started = time.perf_counter()
        bulk_insert(raw, "sessions", SESSION_COLUMNS, listing_rows(count, utcnow()))
        analyze(raw)
        ctx.say(f"  list: loaded {count:,} sessions in {time.perf_counter() - started:.1f} s")
        store = Store.from_url(url, ttl=TTL)
        reads = HandReads(raw)
        try:
            stats, checked = _measure_list(ctx, store, reads)
        finally:
            reads.close()
            store.close()
    rows = []
    for key, name, is_target in (
        ("first", operation, True),
        ("agent", "list_sessions(agent_id=…) first page of 100", False),
        ("next", "list_sessions page 2 (cursor)", False),
    ):
        ours = stats[f"ours_{key}"].median
        base = stats.get(f"hand_{key}")
        pg_target = is_target and ctx.dialect == "postgresql"
        rows.append(
            Row(
                "list",
                name,
                ctx.dialect,
                ours,
                base.median if base else None,
                "raw SELECT … ORDER BY updated_at DESC, id DESC LIMIT 101" if base else "",
                ratio(ours, base.median if base else None),
                target if is_target else "context",
                (ours <= LIST_TARGET_NS) if pg_target else None,
                note="target is PostgreSQL's" if is_target and not pg_target else "",
                details={"stats": {k: vars(v) for k, v in stats.items()}, **checked}
                if is_target
                else {},
            )
        )
    return rows


def _measure_list(ctx: Context, store: Store, reads: HandReads) -> tuple[dict[str, Stats], dict]:
    first = store.list_sessions(limit=100)
    hand_first = reads.page()
    verify(len(first.sessions) == 100 and first.next_cursor is not None, "a full first page")
    verify(
        [s.id for s in first.sessions] == [row[0] for row in hand_first[:100]],
        "library and baseline list the same first page",
    )
    cursor = first.next_cursor
    agent = "agent-07"
    contenders: dict[str, Callable[[int], int]] = {
        "ours_first": lambda i: timed(lambda: store.list_sessions(limit=100)),
        "hand_first": lambda i: timed(lambda: reads.page()),
        "ours_agent": lambda i: timed(lambda: store.list_sessions(agent_id=agent, limit=100)),
        "hand_agent": lambda i: timed(lambda: reads.page(agent_id=agent)),
        "ours_next": lambda i: timed(lambda: store.list_sessions(limit=100, cursor=cursor)),
    }
    settings = ctx.settings
    stats = interleaved(contenders, settings.warmup, settings.repeats)
    return stats, {"sessions_in_table": settings.list_sessions}


# --- row 6: the reaper, with saves running next to it -------------------------------------


@dataclass
class SaverRun:
    """What the saver thread recorded: each save; each get → add → save cycle; and each
    cycle's latency from its scheduled start (coordinated-omission corrected: a cycle that
    waits behind a stalled one counts its wait, and slots never served by the end count
    their time so far, so a stall cannot hide behind the few samples it lets through)."""

    save: list[int] = field(default_factory=list)
    cycle: list[int] = field(default_factory=list)
    scheduled: list[int] = field(default_factory=list)

    def __iadd__(self, other: SaverRun) -> SaverRun:
        self.save += other.save
        self.cycle += other.cycle
        self.scheduled += other.scheduled
        return self


class Saver:
    """A thread doing get → add_message → save on live sessions on a fixed schedule (one
    cycle every `interval_s`; late cycles run back to back until it has caught up)."""

    def __init__(self, store: Store, session_ids: list[str], interval_s: float) -> None:
        self.store = store
        self.session_ids = session_ids
        self.interval_ns = int(interval_s * 1e9)
        self.errors: list[BaseException] = []
        self._i = 0

    def _loop(self, stop: threading.Event, run: SaverRun) -> None:
        slot = time.perf_counter_ns()
        try:
            while not stop.is_set():
                began = time.perf_counter_ns()
                if began < slot:
                    stop.wait((slot - began) / 1e9)
                    continue
                session = self.store.get(self.session_ids[self._i % len(self.session_ids)])
                session.add_message(Role.USER, f"live message {self._i}")
                start = time.perf_counter_ns()
                self.store.save(session)
                end = time.perf_counter_ns()
                run.save.append(end - start)
                run.cycle.append(end - began)
                run.scheduled.append(end - slot)
                self._i += 1
                slot += self.interval_ns
            stopped = time.perf_counter_ns()
            while slot < stopped:  # due but never served
                run.scheduled.append(stopped - slot)
                slot += self.interval_ns
        except BaseException as exc:  # reported by the caller, never lost in the thread
            self.errors.append(exc)

    @contextmanager
    def running(self) -> Iterator[SaverRun]:
        stop = threading.Event()
        run = SaverRun()
        thread = threading.Thread(target=self._loop, args=(stop, run), daemon=True)
        thread.start()
        try:
            yield run
        finally:
            stop.set()
            thread.join()
        if self.errors:
            raise RuntimeError(f"concurrent saver failed: {self.errors[0]!r}") from self.errors[0]

    def idle(self, seconds: float) -> SaverRun:
        with self.running() as run:
            time.sleep(seconds)
        return run


@dataclass
class ReapRun:
    deleted: int
    seconds: float
    saver: SaverRun

    @property
    def rate(self) -> float:
        return self.deleted / self.seconds


def _reap_while_saving(saver: Saver, reap: Callable[[], int]) -> ReapRun:
    with saver.running() as run:
        time.sleep(0.05)  # the saver is under way before the reaper starts
        started = time.perf_counter()
        deleted = reap()
        elapsed = time.perf_counter() - started
    return ReapRun(deleted, elapsed, run)


def _seed_expired(ctx: Context, raw: Raw, prefix: str) -> int:
    count = ctx.settings.reap_expired
    started = time.perf_counter()
    sessions, messages = expired_rows(count, utcnow(), prefix, MESSAGES_PER_EXPIRED_SESSION)
    bulk_insert(raw, "sessions", SESSION_COLUMNS, sessions)
    bulk_insert(raw, "messages", MESSAGE_COLUMNS, messages)
    analyze(raw)
    ctx.say(f"  reaper: loaded {count:,} expired sessions in {time.perf_counter() - started:.1f} s")
    return count


def _left_over(raw: Raw, prefix: str) -> tuple[int, int]:
    conn = raw.connect()
    try:
        like = prefix + "%"
        sessions = conn.execute(
            raw.sql("SELECT count(*) FROM sessions WHERE id LIKE ?"), (like,)
        ).fetchone()[0]
        messages = conn.execute(
            raw.sql("SELECT count(*) FROM messages WHERE session_id LIKE ?"), (like,)
        ).fetchone()[0]
        conn.commit()
        return int(sessions), int(messages)
    finally:
        conn.close()


def run_reaper(ctx: Context) -> list[Row]:
    target = f"≥ {REAP_TARGET_PER_S:,}/s"
    operation = f"reap_expired ({MESSAGES_PER_EXPIRED_SESSION} msgs/session)"
    if not hasattr(Store, "reap_expired"):
        return [not_implemented("reaper", operation, ctx.dialect, "reap_expired", target)]
    settings = ctx.settings
    with ctx.new_database("reap") as url:
        migrate(url)
        raw = Raw(url)
        saver_store = Store.from_url(url, ttl=TTL)
        reaper_store = Store.from_url(url, ttl=TTL)
        live_ids = [f"live-{k}" for k in range(settings.reap_live_sessions)]
        try:
            for k, sid in enumerate(live_ids):
                saver_store.save(new_session(sid, 50, seed=k))
            saver = Saver(saver_store, live_ids, settings.saver_interval_s)
            expected = _seed_expired(ctx, raw, "xa")
            idle = saver.idle(settings.idle_seconds)
            hand = _reap_while_saving(saver, lambda: hand_reap(raw))
            verify(
                hand.deleted == expected and _left_over(raw, "xa") == (0, 0),
                "baseline reaped all",
            )
            _seed_expired(ctx, raw, "xb")
            idle += saver.idle(settings.idle_seconds)
            ours = _reap_while_saving(saver, reaper_store.reap_expired)
            verify(ours.deleted == expected, f"reap_expired reported {ours.deleted} of {expected}")
            verify(_left_over(raw, "xb") == (0, 0), "reap_expired removed sessions and messages")
            _seed_expired(ctx, raw, "xc")
            started = time.perf_counter()
            alone = ReapRun(reaper_store.reap_expired(), 0.0, SaverRun())
            alone.seconds = time.perf_counter() - started
            verify(_left_over(raw, "xc") == (0, 0), "reap_expired (alone) removed everything")
        finally:
            reaper_store.close()
            saver_store.close()
    rows = _reaper_rows(ctx.dialect, operation, target, idle, hand, ours)
    rows.insert(
        1,
        Row(
            "reaper",
            f"{operation}, no concurrent saves",
            ctx.dialect,
            alone.rate,
            None,
            "",
            None,
            "context",
            None,
            unit="per_s",
            note=f"{alone.deleted:,} sessions in {alone.seconds:.2f} s",
        ),
    )
    return rows


def _reaper_rows(
    dialect: str, operation: str, target: str, idle: SaverRun, hand: ReapRun, ours: ReapRun
) -> list[Row]:
    def summary(run: SaverRun) -> dict[str, Any]:
        return {
            key: vars(Stats.of(values)) if values else None
            for key, values in (
                ("save", run.save),
                ("cycle", run.cycle),
                ("scheduled", run.scheduled),
            )
        }

    details = {
        "deleted": ours.deleted,
        "seconds": ours.seconds,
        "baseline_seconds": hand.seconds,
        "saver_idle": summary(idle),
        "saver_during_ours": summary(ours.saver),
        "saver_during_baseline": summary(hand.saver),
    }

    def median(values: list[int]) -> float | None:
        return Stats.of(values).median if values else None

    idle_sched, idle_save = median(idle.scheduled), median(idle.save)
    ours_sched, hand_sched = median(ours.saver.scheduled), median(hand.saver.scheduled)
    ours_save = median(ours.saver.save)
    slowdown = ratio(ours_sched, idle_sched)
    served = f"{len(ours.saver.save)} of {len(ours.saver.scheduled)} scheduled saves done"
    return [
        Row(
            "reaper",
            operation,
            dialect,
            ours.rate,
            hand.rate,
            "DELETE … WHERE id IN (expired LIMIT 1000), cascade",
            ratio(ours.rate, hand.rate),
            target,
            ours.rate >= REAP_TARGET_PER_S,
            unit="per_s",
            note=f"{ours.deleted:,} sessions in {ours.seconds:.2f} s (ratio: higher is better)",
            details=details,
        ),
        Row(
            "reaper",
            "concurrent get+save latency during reap_expired vs idle",
            dialect,
            ours_sched,
            idle_sched,
            "same saver, no reaper",
            slowdown,
            "≤ 2x",
            slowdown is not None and slowdown <= 2.0,
            note=f"from scheduled start, 200/s; {served} during the reap",
        ),
        Row(
            "reaper",
            "save() alone during reap_expired vs idle",
            dialect,
            ours_save,
            idle_save,
            "same saver, no reaper",
            ratio(ours_save, idle_save),
            "context",
            None,
            note="completed saves only: blind to stalls",
        ),
        Row(
            "reaper",
            "concurrent get+save latency during hand-written reap",
            dialect,
            hand_sched,
            idle_sched,
            "same saver, no reaper",
            ratio(hand_sched, idle_sched),
            "context",
            None,
        ),
    ]
