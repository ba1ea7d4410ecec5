"""Benchmark: server time of the viewer's first sessions page over many sessions (PostgreSQL).

    .venv/bin/python -m bench.ui_page                      # 100,000 sessions (quick)
    .venv/bin/python -m bench.ui_page --sessions 1000000   # the SPEC target: <= 200 ms

Seeds N live sessions in one server-side statement (INSERT ... SELECT FROM generate_series),
serves the viewer (uvicorn, in-process, loopback) and times whole HTTP GETs of the first
page, unfiltered and filtered by agent, from request to last byte (median of --repeats after
warm-up): an upper bound of the server time, which also includes the loopback round trip.
The database comes from tests/postgres_provision.py, as for the tests and `python -m bench`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from sqlsessions import migrate  # noqa: E402

TARGET_MS = 200.0
AGENTS = 10

SEED = """
INSERT INTO sessions (id, agent_id, created_at, updated_at, expires_at, version,
                      rewrite_version, last_seq, message_count, incarnation)
SELECT 'bench-' || lpad(g::text, 8, '0'),
       'agent-' || (g % :agents),
       now() - g * interval '1 second',
       now() - g * interval '1 second',
       now() + interval '7 days',
       1, 1, g % 50, g % 50, md5(g::text)
FROM generate_series(1, :n) AS g
"""


def seed(url: str, n: int) -> float:
    """Insert `n` sessions server-side; returns the seconds it took (ANALYZE included)."""
    engine = create_engine(url, poolclass=NullPool)
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text(SEED), {"n": n, "agents": AGENTS})
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE sessions"))
    engine.dispose()
    return time.perf_counter() - started


def time_page(address: str, repeats: int, warmup: int = 5) -> list[float]:
    """Milliseconds per GET of `address`, after `warmup` untimed requests."""
    samples: list[float] = []
    for i in range(warmup + repeats):
        started = time.perf_counter()
        with urllib.request.urlopen(address) as response:
            body = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200 or b"session-row" not in body:
            raise RuntimeError(f"{address} answered {response.status} without sessions")
        if i >= warmup:
            samples.append(elapsed)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=100_000, help="sessions to seed")
    parser.add_argument("--repeats", type=int, default=30, help="timed requests per page")
    args = parser.parse_args(argv)

    from postgres_provision import provision_postgres, temporary_database
    from sqlsessions.ui import create_app
    from ui_browser import serving

    def say(message: str) -> None:
        print(message, file=sys.stderr)

    with (
        provision_postgres(report=say) as server_url,
        temporary_database(server_url, prefix="bench_ui") as url,
    ):
        migrate(url)
        say(f"seeding {args.sessions:,} sessions ...")
        seconds = seed(url, args.sessions)
        say(f"seeded in {seconds:.1f} s")
        pages = {"first page": "/", "first page, one agent": "/?agent=agent-3"}
        print(f"| page ({args.sessions:,} sessions, PostgreSQL) | median ms | p90 ms | target |")
        print("|---|---|---|---|")
        worst = 0.0
        with serving(create_app(url)) as base:
            for label, path in pages.items():
                samples = sorted(time_page(base + path, args.repeats))
                median = statistics.median(samples)
                p90 = samples[int(len(samples) * 0.9) - 1]
                worst = max(worst, median)
                print(f"| {label} | {median:.1f} | {p90:.1f} | <= {TARGET_MS:.0f} ms |")
    return 0 if worst <= TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
