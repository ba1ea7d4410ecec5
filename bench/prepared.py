"""What the PgBouncer-safe default costs: no server-side prepared statements (psycopg's
`prepare_threshold=None`, the store's default) against psycopg's own default (5), on a
direct PostgreSQL connection.

Two stores on the same database, one per setting, interleaved call by call over every
operation (one loop, so drift hits all rows alike): cached get, cold load of 1,000
messages, history(50), append, save after adding one message. The ratio is the default's
time over the prepared one's (above 1: preparing would be faster). SQLite has no such
setting: no rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event

from bench.baselines import Raw
from bench.harness import Row, Stats, interleaved, ratio, timed
from bench.scenarios import TTL, Context, message_count, verify
from bench.seed import new_session, user_message
from sqlsessions import Role, Session, Store, StoreConfig

PREPARED = 5
"""psycopg's default threshold: a statement is prepared on its 5th execution on a connection."""
HISTORY_LIMIT = 50
SAVE_SIZE = 100


def run_prepared(ctx: Context) -> list[Row]:
    if ctx.dialect != "postgresql":
        return []
    n = ctx.settings.load_messages
    stores = {
        "default": Store(StoreConfig(url=ctx.url, ttl=TTL)),
        "prepared": Store(StoreConfig(url=ctx.url, ttl=TTL, prepare_threshold=PREPARED)),
    }
    opened: dict[str, list[Any]] = {name: [] for name in stores}
    for name, store in stores.items():
        event.listen(store.engine, "connect", lambda conn, _record, n=name: opened[n].append(conn))
    try:
        ctx.say(f"  prepared: seeding (load {n:,} msgs, save N={SAVE_SIZE})")
        shared_load, shared_get = "prep-load", "prep-get"
        seeder = stores["default"]
        seeder.save(new_session(shared_load, n, seed=5))
        seeder.save(new_session(shared_get, n, seed=6))
        contenders: dict[str, Callable[[int], int]] = {}
        appended: dict[str, list[int]] = {}
        for name, store in stores.items():
            contenders.update(_contenders(name, store, shared_load, shared_get, appended))
        total = len(contenders)
        ctx.say(f"  prepared: {total} contenders x {ctx.settings.warmup + ctx.settings.repeats}")
        stats = interleaved(contenders, ctx.settings.warmup, ctx.settings.repeats)
        _check(stores, opened, shared_load, n, appended, Raw(ctx.url))
    finally:
        for store in stores.values():
            store.close()
    return _rows(ctx.dialect, n, stats)


OPERATIONS = {
    "get": "get cached unchanged (1,000 msgs)",
    "load": "load 1,000 msgs, cold cache",
    "history": f"history({HISTORY_LIMIT})",
    "append": "append 1 msg",
    "save": f"save +1 msg, N={SAVE_SIZE}",
}


def _contenders(
    name: str,
    store: Store,
    shared_load: str,
    shared_get: str,
    appended: dict[str, list[int]],
) -> dict[str, Callable[[int], int]]:
    append_id, save_id = f"prep-append-{name}", f"prep-save-{name}"
    store.save(new_session(append_id, SAVE_SIZE, seed=7))
    store.save(new_session(save_id, SAVE_SIZE, seed=8))
    saved: Session = store.get(save_id)
    store.get(shared_get)  # cached from here on
    appended[name] = [0]

    def get(_: int) -> int:
        return timed(lambda: store.get(shared_get))

    def load(_: int) -> int:
        store.clear_cache()
        return timed(lambda: store.get_if_exists(shared_load))

    def history(_: int) -> int:
        return timed(lambda: store.history(shared_load, limit=HISTORY_LIMIT))

    def append(i: int) -> int:
        message = user_message(i)
        appended[name][0] += 1
        return timed(lambda: store.append(append_id, message))

    def save(i: int) -> int:
        saved.add_message(Role.USER, f"message {i}")
        return timed(lambda: store.save(saved))

    timers = {"get": get, "load": load, "history": history, "append": append, "save": save}
    return {f"{op}@{name}": timer for op, timer in timers.items()}


def _check(
    stores: dict[str, Store],
    opened: dict[str, list[Any]],
    shared_load: str,
    n: int,
    appended: dict[str, list[int]],
    raw: Raw,
) -> None:
    loads = []
    for name, store in stores.items():
        store.clear_cache()
        loads.append(store.get_if_exists(shared_load))
        expected = SAVE_SIZE + appended[name][0]
        verify(message_count(raw, f"prep-append-{name}") == expected, f"{name}: every append")
        count = sum(_prepared_on(conn) for conn in opened[name] if not conn.closed)
        verify((count > 0) == (name == "prepared"), f"{name}: prepares only when configured")
    verify(len(loads[0].messages) == n, "every message loaded")
    verify(loads[0].messages == loads[1].messages, "both settings load the same messages")


def _prepared_on(conn: Any) -> int:
    """Statements prepared on the server session of one of a store's idle psycopg
    connections (a store keeps one checked out between calls: ask each, not the pool)."""
    with conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements")
        row = cursor.fetchone()
    conn.rollback()
    return int(row[0])


def _rows(dialect: str, n: int, stats: dict[str, Stats]) -> list[Row]:
    rows = []
    for op, label in OPERATIONS.items():
        default, prepared = stats[f"{op}@default"], stats[f"{op}@prepared"]
        rows.append(
            Row(
                "prepared",
                f"{label}: no server prepares (default)",
                dialect,
                default.median,
                prepared.median,
                f"prepare_threshold={PREPARED}",
                ratio(default.median, prepared.median),
                "context",
                None,
                note="what the PgBouncer-safe default costs on a direct connection",
                details={"stats": {"default": vars(default), "prepared": vars(prepared)}},
            )
        )
    return rows
