"""The per-session SPEC §7 rows: save (and the blob design), append, cold load, cached get.

Each scenario takes a `Context` (a migrated database of one dialect) and returns `Row`s.
Ours and the baseline alternate call by call (`interleaved`), so machine noise hits both.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from bench.baselines import BlobStore, HandAppend, HandHistory, HandLoad, HandReads, HandSave, Raw
from bench.harness import (
    EngineProbe,
    Row,
    Settings,
    Stats,
    interleaved,
    not_implemented,
    ratio,
    timed,
    wire_round_trips,
    wire_trace,
)
from bench.seed import analyze, new_session, user_message
from sqlsessions import Role, Session, Store

TTL = timedelta(days=7)
SAVE_TARGET_SIZES = (10, 1_000, 10_000)
"""The N of SPEC §7's save rows; the chart and the blob comparison also use 100."""


@dataclass
class Context:
    """One dialect's run: its main database, the sizes, and how to get more databases."""

    dialect: str
    url: str
    settings: Settings
    new_database: Callable[[str], AbstractContextManager[str]]
    say: Callable[[str], None]
    chart: dict[str, Any] = field(default_factory=dict)

    def store(self) -> tuple[Store, EngineProbe]:
        store = Store.from_url(self.url, ttl=TTL)
        return store, EngineProbe(store.engine)


def message_count(raw: Raw, session_id: str) -> int:
    conn = raw.connect()
    try:
        row = conn.execute(
            raw.sql("SELECT count(*) FROM messages WHERE session_id = ?"), (session_id,)
        ).fetchone()
        conn.commit()
        return int(row[0])
    finally:
        conn.close()


def sent_note(counted: dict[str, Any]) -> str:
    """What one call sent: statements (SQLite) or round trips (PostgreSQL), in order."""
    sent = ", ".join(counted["sent"])
    if "wire_round_trips" in counted:
        return f"{counted['wire_round_trips']} round trips: {sent}"
    return f"sent: {sent}"


def verify(condition: bool, what: str) -> None:
    """The benchmark checks that what it timed really happened."""
    if not condition:
        raise RuntimeError(f"benchmark sanity check failed: {what}")


# --- rows 1 and 7: save after appending one message, against N ----------------------------


def run_save(ctx: Context) -> list[Row]:
    """Every (N, design) pair in one interleaved loop: the flatness ratio (N=10,000 against
    N=10) and the blob comparison come from the same moments of the run."""
    settings = ctx.settings
    store, probe = ctx.store()
    raw = Raw(ctx.url)
    hand_conn = raw.connect()
    blob = BlobStore(raw, TTL)
    try:
        contenders: dict[str, Callable[[int], int]] = {}
        sessions: dict[int, SaveSessions] = {}
        for n in settings.save_sizes:
            ctx.say(f"  save: preparing {settings.copies(n)} sessions x 3 designs at N={n:,}")
            sessions[n] = SaveSessions.create(store, raw, hand_conn, blob, n, settings.copies(n))
            contenders.update(sessions[n].contenders(store, blob))
        ctx.say(f"  save: {len(contenders)} contenders x {settings.warmup + settings.repeats}")
        stats = interleaved(contenders, settings.warmup, settings.repeats)
        counts = {
            n: group.check_and_count(store, probe, raw, blob) for n, group in sessions.items()
        }
    finally:
        blob.close()
        hand_conn.close()
        store.close()
    per_size = {
        n: {design: stats[f"{design}@{n}"] for design in ("ours", "hand", "blob")}
        for n in settings.save_sizes
    }
    for n, group in sessions.items():
        counts[n]["n_range"] = [n, max(len(s.messages) for s in group.ours)]
    ctx.chart["save"] = {
        str(n): {name: vars(st) for name, st in by_design.items()}
        for n, by_design in per_size.items()
    }
    return _save_rows(ctx.dialect, per_size, counts)


@dataclass
class SaveSessions:
    """The sessions of one size N: loaded Session objects (ours), hand-written savers on
    sessions the library created, and in-memory sessions of the blob design."""

    n: int
    ours: list[Session]
    hands: list[HandSave]
    blobs: list[Session]

    @classmethod
    def create(
        cls, store: Store, raw: Raw, hand_conn: Any, blob: BlobStore, n: int, copies: int
    ) -> SaveSessions:
        group = cls(n, [], [], [])
        for k in range(copies):
            sid = f"save-ours-{n}-{k}"
            store.save(new_session(sid, n, seed=k))
            group.ours.append(store.get(sid))  # the loaded, cached object the loop reuses
            hid = f"save-hand-{n}-{k}"
            store.save(new_session(hid, n, seed=k))
            group.hands.append(HandSave(raw, hand_conn, hid, TTL))
            blob_session = new_session(f"save-blob-{n}-{k}", n, seed=k)
            blob.save(blob_session)
            group.blobs.append(blob_session)
        return group

    def contenders(self, store: Store, blob: BlobStore) -> dict[str, Callable[[int], int]]:
        ours, hands, blobs = self.ours, self.hands, self.blobs

        def save_ours(i: int) -> int:
            session = ours[i % len(ours)]
            session.add_message(Role.USER, user_message(i).content)
            return timed(lambda: store.save(session))

        def save_hand(i: int) -> int:
            message = user_message(i)
            return timed(lambda: hands[i % len(hands)].save(message))

        def save_blob(i: int) -> int:
            session = blobs[i % len(blobs)]
            session.add_message(Role.USER, user_message(i).content)
            return timed(lambda: blob.save(session))

        n = self.n
        return {f"ours@{n}": save_ours, f"hand@{n}": save_hand, f"blob@{n}": save_blob}

    def check_and_count(
        self, store: Store, probe: EngineProbe, raw: Raw, blob: BlobStore
    ) -> dict[str, Any]:
        """Check that every timed save landed; count what one more save sends."""
        for session in self.ours:
            verify(message_count(raw, session.id) == len(session.messages), f"{session.id} saved")
        for hand in self.hands:
            verify(message_count(raw, hand.sid) == hand.last_seq, f"{hand.sid} saved")
        for session in self.blobs:
            verify(len(blob.load(session.id).messages) == len(session.messages), "blob saved")
        last = self.ours[-1]
        last.add_message(Role.USER, "counted")
        return probe.count(lambda: store.save(last))


def _save_rows(
    dialect: str, per_size: dict[int, dict[str, Stats]], counts: dict[int, dict[str, Any]]
) -> list[Row]:
    rows: list[Row] = []
    for n in SAVE_TARGET_SIZES:
        if n not in per_size:
            continue
        ours, hand = per_size[n]["ours"].median, per_size[n]["hand"].median
        r = ratio(ours, hand)
        info = counts[n]
        note = sent_note(info)
        rows.append(
            Row(
                "save",
                f"save +1 msg, N={n:,}",
                dialect,
                ours,
                hand,
                "hand-written UPDATE+INSERT, 1 tx",
                r,
                "≤ 2x baseline",
                r is not None and r <= 2.0,
                note=note,
                details={"stats": {k: vars(v) for k, v in per_size[n].items()}, **info},
            )
        )
    sizes = sorted(per_size)
    if len(sizes) >= 2:
        small, large = sizes[0], sizes[-1]
        flat = ratio(per_size[large]["ours"].median, per_size[small]["ours"].median)
        rows.append(
            Row(
                "save",
                f"save flatness N={large:,} / N={small:,}",
                dialect,
                per_size[large]["ours"].median,
                per_size[small]["ours"].median,
                f"ours at N={small:,}",
                flat,
                "≤ 1.3x",
                flat is not None and flat <= 1.3,
            )
        )
    for n in sizes:
        ours, blob = per_size[n]["ours"].median, per_size[n]["blob"].median
        r = ratio(ours, blob)
        must_beat = n >= 1_000
        rows.append(
            Row(
                "blob",
                f"save +1 msg vs blob design, N={n:,}",
                dialect,
                ours,
                blob,
                "whole-session JSON UPSERT",
                r,
                "< 1x (beat blob)" if must_beat else "context",
                (r is not None and r < 1.0) if must_beat else None,
            )
        )
    return rows


# --- row 2: append ------------------------------------------------------------------------


def run_append(ctx: Context) -> list[Row]:
    target = "≤ 1.5x baseline"
    if not hasattr(Store, "append"):
        return [not_implemented("append", "append 1 msg", ctx.dialect, "append", target)]
    settings = ctx.settings
    store, probe = ctx.store()
    raw = Raw(ctx.url)
    hand = HandAppend(raw, TTL)
    ours_id, hand_id = "append-ours", "append-hand"
    try:
        store.save(new_session(ours_id, 100))
        store.save(new_session(hand_id, 100))

        calls = {"ours": 0, "hand": 0}

        def append_ours(i: int) -> int:
            message = user_message(i)
            calls["ours"] += 1
            return timed(lambda: store.append(ours_id, message))

        def append_hand(i: int) -> int:
            message = user_message(i)
            calls["hand"] += 1
            return timed(lambda: hand.append(hand_id, message))

        stats = interleaved(
            {"ours": append_ours, "hand": append_hand}, settings.warmup, settings.repeats
        )
        counted = probe.count(lambda: store.append(ours_id, user_message(-1)))
        hand_conns = [hand.conn] if raw.pg else []
        with wire_trace(hand_conns) as read_hand_trace:
            hand.append(hand_id, user_message(-1))
        hand_trips = wire_round_trips(read_hand_trace())
        ours_total, hand_total = 100 + calls["ours"] + 1, 100 + calls["hand"] + 1
        verify(message_count(raw, ours_id) == ours_total, "append wrote every message")
        verify(message_count(raw, hand_id) == hand_total, "baseline append wrote every message")
    finally:
        hand.close()
        store.close()
    ours, base = stats["ours"].median, stats["hand"].median
    r = ratio(ours, base)
    baseline_name = "1 CTE statement, autocommit" if raw.pg else "UPDATE…RETURNING+INSERT, 1 tx"
    rows = [
        Row(
            "append",
            "append 1 msg",
            ctx.dialect,
            ours,
            base,
            baseline_name,
            r,
            target,
            r is not None and r <= 1.5,
            note=sent_note(counted),
            details={"stats": {k: vars(v) for k, v in stats.items()}, **counted},
        )
    ]
    if raw.pg:
        events = counted["event_round_trips"]
        wire = counted["wire_round_trips"]
        rows.append(
            Row(
                "append",
                "append round trips (SQLAlchemy events)",
                ctx.dialect,
                events,
                1,
                "the CTE statement",
                ratio(events, 1),
                "= 1",
                events == 1,
                unit="count",
                note="statements + BEGIN/COMMIT psycopg sends",
            )
        )
        rows.append(
            Row(
                "append",
                "append round trips (libpq wire trace)",
                ctx.dialect,
                wire,
                hand_trips,
                "the CTE statement (traced)",
                ratio(wire, hand_trips),
                "= 1",
                wire == 1,
                unit="count",
                note="counted on the wire (would include a pool pre-ping)",
                details={"frontend_messages": counted["wire_messages"]},
            )
        )
    return rows


# --- rows 3 and 4: cold load and cached get -----------------------------------------------


def run_load(ctx: Context) -> list[Row]:
    settings = ctx.settings
    store, probe = ctx.store()
    raw = Raw(ctx.url)
    hand = HandLoad(raw)
    hand_history = HandHistory(raw)
    sid = "load-session"
    n = settings.load_messages
    try:
        store.save(new_session(sid, n, seed=3))
        analyze(raw)  # planner statistics, as autovacuum keeps them in a running database

        def load_ours(i: int) -> int:
            store.clear_cache()
            return timed(lambda: store.get_if_exists(sid))

        def load_hand(i: int) -> int:
            return timed(lambda: hand.load(sid))

        def load_dicts(i: int) -> int:
            return timed(lambda: hand.load_dicts(sid))

        def load_go_dicts(i: int) -> int:
            return timed(lambda: hand.load_go_dicts(sid))

        def history_ours(i: int) -> int:
            return timed(lambda: store.history(sid, 50))

        def history_hand(i: int) -> int:
            return timed(lambda: hand_history.history(sid, 50))

        stats = interleaved(
            {
                "ours": load_ours,
                "hand": load_hand,
                "dicts": load_dicts,
                "go_dicts": load_go_dicts,
                "history": history_ours,
                "history_hand": history_hand,
            },
            settings.warmup,
            settings.repeats,
        )
        store.clear_cache()
        mine, theirs = store.get_if_exists(sid), hand.load(sid)
        verify(len(mine.messages) == n, "the library loaded every message")
        verify(mine.messages == theirs.messages, "both loads built the same messages")
        verify(mine.metadata == theirs.metadata, "both loads built the same metadata")
        verify(len(hand.load_dicts(sid)["messages"]) == n, "the dict load read every message")
        tail = store.history(sid, 50)
        verify(len(tail) >= 50, "history returned at least 50 messages")
        verify(
            [m.content for m in tail[-50:]]
            == [d["content"] for d in hand_history.history(sid, 50)],
            "both histories read the same messages",
        )
        store.clear_cache()
        counted = probe.count(lambda: store.get_if_exists(sid))
    finally:
        hand.close()
        hand_history.close()
        store.close()
    note = sent_note(counted)
    details = {"stats": {k: vars(v) for k, v in stats.items()}, **counted}
    rows = []
    for label, ours_key, base_key, base_name, target in (
        (f"load {n:,} msgs, cold cache", "ours", "hand", "same rows into the same models", None),
        (
            f"load {n:,} msgs, cold cache, vs plain dicts",
            "ours",
            "dicts",
            "same rows into plain dicts",
            2.0,
        ),
        (
            f"load {n:,} msgs, cold cache, vs Go-field dicts",
            "ours",
            "go_dicts",
            "only the Go fields' columns into plain dicts (before items and usage)",
            None,
        ),
        (f"history(50) of {n:,} msgs", "history", "history_hand", "same rows into dicts", 2.0),
    ):
        ours, base = stats[ours_key].median, stats[base_key].median
        r = ratio(ours, base)
        rows.append(
            Row(
                "load",
                label,
                ctx.dialect,
                ours,
                base,
                base_name,
                r,
                f"≤ {target:g}x baseline" if target else "context",
                (r is not None and r <= target) if target else None,
                note=note if ours_key == "ours" else "",
                details=details,
            )
        )
    return rows


def run_get(ctx: Context) -> list[Row]:
    settings = ctx.settings
    store, probe = ctx.store()
    raw = Raw(ctx.url)
    reads = HandReads(raw)
    sid = "get-session"
    try:
        store.save(new_session(sid, settings.load_messages, seed=4))
        store.get(sid)  # cached from here on

        def get_ours(i: int) -> int:
            return timed(lambda: store.get(sid))

        def get_hand(i: int) -> int:
            return timed(lambda: reads.head(sid))

        stats = interleaved({"ours": get_ours, "hand": get_hand}, settings.warmup, settings.repeats)
        counted = probe.count(lambda: store.get(sid))
    finally:
        reads.close()
        store.close()
    ours, base = stats["ours"].median, stats["hand"].median
    queries = counted["queries"]
    return [
        Row(
            "get",
            "get cached unchanged: queries",
            ctx.dialect,
            queries,
            1,
            "one PK lookup",
            ratio(queries, 1),
            "= 1 query",
            queries == 1,
            unit="count",
            note=sent_note(counted),
            details=counted,
        ),
        Row(
            "get",
            f"get cached unchanged ({settings.load_messages:,} msgs): time",
            ctx.dialect,
            ours,
            base,
            "raw PK lookup, autocommit",
            ratio(ours, base),
            "context",
            None,
            details={"stats": {k: vars(v) for k, v in stats.items()}},
        ),
    ]
