"""Citus beside single-node PostgreSQL: the store's main rows on both, in one run (SPEC §10).

    .venv/bin/python -m bench.citus            # about 1-2 minutes on 2 cores
    .venv/bin/python -m bench.citus --quick    # smoke run

PostgreSQL comes from tests/postgres_provision.py (a fresh database), Citus from
tests/citus_provision.py (a fresh schema on the coordinator, the tables distributed by
session with the server's default shard count). Rows: `save` after appending 1 message to
a 1,000-message session, `append` of 1 message, cold `load` of a 1,000-message session
(a tool call every 4th message), `history(limit=50)` of it, the first `list_sessions` page
of 100 among many sessions, and the reaper's rate on expired sessions of 10 messages.
Both targets are timed interleaved (bench.harness.interleaved); medians in milliseconds.
Commits do not wait for an fsync on either (PostgreSQL: synchronous_commit=off; the
cluster's nodes run with fsync=off), so the rows compare round trips and planning, not disks.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "tests"):  # `python bench/citus.py` and the provisioning helpers
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from sqlalchemy import make_url  # noqa: E402

from bench.harness import Stats, interleaved, timed  # noqa: E402
from bench.seed import (  # noqa: E402
    MESSAGE_COLUMNS,
    SESSION_COLUMNS,
    expired_rows,
    listing_rows,
    new_session,
    user_message,
    utcnow,
)
from citus_provision import provision_citus, temporary_schema  # noqa: E402
from postgres_provision import provision_postgres, temporary_database  # noqa: E402
from sqlsessions import Store, StoreConfig, migrate  # noqa: E402

TARGETS = ("postgresql", "citus")


@dataclass(frozen=True)
class Sizes:
    repeats: int
    warmup: int
    listed: int
    expired: int

    @classmethod
    def for_run(cls, quick: bool) -> Sizes:
        if quick:
            return cls(repeats=12, warmup=5, listed=5_000, expired=300)
        return cls(repeats=60, warmup=10, listed=50_000, expired=2_000)


def with_options(url: str, *options: str) -> str:
    """`url` with libpq `-c` options added to any it has."""
    parsed = make_url(url)
    given = parsed.query.get("options", "")
    merged = " ".join([given, *(f"-c{o}" for o in options)]).strip()
    return parsed.update_query_dict({"options": merged}).render_as_string(hide_password=False)


@contextmanager
def targets() -> Iterator[dict[str, str]]:
    """{target: URL of a freshly migrated database} (Citus: distributed by session)."""
    with ExitStack() as stack:
        pg = stack.enter_context(temporary_database(stack.enter_context(provision_postgres())))
        citus = stack.enter_context(temporary_schema(stack.enter_context(provision_citus())))
        urls = {
            "postgresql": with_options(pg, "synchronous_commit=off"),
            "citus": citus,  # its nodes run with fsync=off already
        }
        migrate(urls["postgresql"])
        migrate(urls["citus"], distribute=True)
        yield urls


def copy_rows(store: Store, table: str, columns: tuple[str, ...], rows: Any) -> None:
    """COPY rows through the store's engine (its URL options, e.g. the search path, apply)."""
    raw = store.engine.raw_connection()
    try:
        cursor = raw.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        raw.commit()
    finally:
        raw.close()


def analyze(store: Store) -> None:
    with store.engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()


def calls(stores: dict[str, Store], sizes: Sizes) -> dict[str, dict[str, Callable[[int], int]]]:
    """{row: {target: one timed call}} for the interleaved rows."""
    for store in stores.values():
        store.save(new_session("big", 1000))
        store.save(new_session("growing", 1000))
    growing = {name: store.get("growing") for name, store in stores.items()}

    def save(name: str) -> Callable[[int], int]:
        store, session = stores[name], growing[name]

        def call(i: int) -> int:
            session.messages.append(user_message(i))
            return timed(lambda: store.save(session))

        return call

    def cold_load(name: str) -> Callable[[int], int]:
        store = stores[name]

        def call(i: int) -> int:
            store.clear_cache()
            return timed(lambda: store.get("big"))

        return call

    def simple(action: Callable[[Store, int], Any]) -> Callable[[str], Callable[[int], int]]:
        return lambda name: lambda i: timed(lambda: action(stores[name], i))

    rows: dict[str, Callable[[str], Callable[[int], int]]] = {
        "save (1 message onto 1,000)": save,
        "append (1 message)": simple(lambda s, i: s.append(f"a{i % 50}", user_message(i))),
        "load (1,000 messages, cold)": cold_load,
        "history (limit=50)": simple(lambda s, i: s.history("big", 50)),
        f"list_sessions (first 100 of {sizes.listed:,})": simple(
            lambda s, i: s.list_sessions(limit=100)
        ),
    }
    return {row: {name: make(name) for name in stores} for row, make in rows.items()}


def append_shapes(url: str, sizes: Sizes) -> float:
    """How much slower PostgreSQL's one-call append (the append function) is on Citus than
    the short transaction of single-shard statements the store uses there (the reason),
    interleaved."""
    chosen, forced = Store(StoreConfig(url=url)), Store(StoreConfig(url=url))
    try:
        chosen.get("warm"), forced.get("warm")  # both detect Citus at first use
        core = forced._core  # private on purpose: force the shape the store would not pick
        core.citus = False
        stats = interleaved(
            {
                "two": lambda i: timed(lambda: chosen.append(f"t{i % 50}", user_message(i))),
                "one": lambda i: timed(lambda: forced.append(f"o{i % 50}", user_message(i))),
            },
            sizes.warmup,
            sizes.repeats,
        )
    finally:
        chosen.close(), forced.close()
    return stats["one"].median / stats["two"].median


def reap_rate(store: Store, sizes: Sizes, prefix: str) -> float:
    """Expired sessions (10 messages each) the reaper deletes per second."""
    store.reap_expired()  # the listing rows that already expired, outside the timing
    sessions, messages = expired_rows(sizes.expired, utcnow(), prefix, 10)
    copy_rows(store, "sessions", SESSION_COLUMNS, sessions)
    copy_rows(store, "messages", MESSAGE_COLUMNS, messages)
    analyze(store)
    started = time.perf_counter()
    deleted = store.reap_expired()
    elapsed = time.perf_counter() - started
    if deleted != sizes.expired:
        raise RuntimeError(f"reaped {deleted} of {sizes.expired} expired sessions")
    return deleted / elapsed


def run(sizes: Sizes) -> list[tuple[str, dict[str, float]]]:
    results: list[tuple[str, dict[str, float]]] = []
    with targets() as urls:
        stores = {name: Store(StoreConfig(url=url)) for name, url in urls.items()}
        try:
            for store in stores.values():
                copy_rows(store, "sessions", SESSION_COLUMNS, listing_rows(sizes.listed, utcnow()))
                analyze(store)
            for row, contenders in calls(stores, sizes).items():
                print(f"timing {row}", file=sys.stderr, flush=True)
                stats: dict[str, Stats] = interleaved(contenders, sizes.warmup, sizes.repeats)
                results.append((row, {name: s.median / 1e6 for name, s in stats.items()}))
            print("timing the append shapes on Citus", file=sys.stderr, flush=True)
            results.append(
                (
                    "append on Citus: one multi-CTE statement / the store's Citus shape",
                    {"postgresql": float("nan"), "citus": append_shapes(urls["citus"], sizes)},
                )
            )
            rates = {name: reap_rate(store, sizes, "x") for name, store in stores.items()}
            results.append((f"reap ({sizes.expired:,} expired, sessions/s)", rates))
        finally:
            for store in stores.values():
                store.close()
    return results


def markdown(results: list[tuple[str, dict[str, float]]]) -> str:
    lines = [
        "| row | PostgreSQL | Citus (3 nodes) | Citus / PostgreSQL |",
        "|---|---:|---:|---:|",
    ]
    for row, values in results:
        pg, citus = values["postgresql"], values["citus"]
        if pg != pg:  # NaN: a Citus-only ratio
            lines.append(f"| {row} | | | {citus:.2f} |")
            continue
        unit = "" if row.startswith("reap") else " ms"
        shown = (f"{pg:,.0f}", f"{citus:,.0f}") if not unit else (f"{pg:.2f}", f"{citus:.2f}")
        lines.append(f"| {row} | {shown[0]}{unit} | {shown[1]}{unit} | {citus / pg:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.citus", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    args = parser.parse_args(argv)
    print(markdown(run(Sizes.for_run(args.quick))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
