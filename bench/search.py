"""Full-text search at scale (SPEC §7): first page of `store.search` over 1,000,000 messages
on PostgreSQL, target median <= 50 ms.

    .venv/bin/python -m bench.search [--messages N] [--rounds R]

The messages are seeded inside the server (``generate_series``; 100 per session, 10,000
sessions for a million) with a controlled vocabulary, so each query's match count is known:
``item<k>`` matches about N/10,007 messages, ``topic<k>`` N/1,000, ``region<k>`` N/97, and
``topic<k> region<j>`` their intersection. The GIN index is built after the load, as
migration 0006 builds it on an existing table. Each query's first page (20 hits, best
first, then newest first) is timed `--rounds` times through `Store.search`, after one
discarded warm-up; the median and p90 are printed. PostgreSQL comes from the same place as
for the tests (tests/postgres_provision.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "tests"):  # `python bench/search.py` and postgres_provision
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from sqlsessions import Store, migrate  # noqa: E402
from sqlsessions.config import normalize_url  # noqa: E402

TARGET_MS = 50.0
PER_SESSION = 100
QUERIES = (
    ("rare word (~N/10,007 matches)", "item4242"),
    ("common word (~N/1,000 matches)", "topic17"),
    ("two words (~N/97,000 matches)", "topic17 region5"),
    ("phrase (~N/1,000 matches)", '"asks about topic17"'),
    ("frequent word (~N/97 matches)", "region5"),
)


def seed(url: str, count: int) -> None:
    """`count` messages in count/100 sessions, written by the server itself."""
    engine = create_engine(normalize_url(url), poolclass=NullPool)
    sessions = max(1, count // PER_SESSION)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_messages_content_search"))
        conn.execute(
            text(
                "INSERT INTO sessions (id, agent_id, created_at, updated_at, expires_at,"
                " version, rewrite_version, last_seq, message_count, incarnation)"
                " SELECT 'bench-' || s, 'agent-' || (s % 10), now(), now(), NULL, 1, 1,"
                " :per, :per, '' FROM generate_series(0, :sessions - 1) s"
            ),
            {"per": PER_SESSION, "sessions": sessions},
        )
        conn.execute(
            text(
                "INSERT INTO messages (session_id, seq, role, content, created_at)"
                " SELECT 'bench-' || (i / :per), i % :per + 1,"
                " CASE WHEN i % 2 = 0 THEN 'user' ELSE 'assistant' END,"
                " format('The user asks about topic%s and item%s in region%s, and the"
                " assistant answers with a few sentences of ordinary text.',"
                " i % 1000, i % 10007, i % 97),"
                " now() - make_interval(secs => :count - i)"
                " FROM generate_series(0, :count - 1) i"
            ),
            {"per": PER_SESSION, "count": sessions * PER_SESSION},
        )
        conn.execute(
            text("CREATE INDEX ix_messages_content_search ON messages USING gin (search_vector)")
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()


def measure(url: str, rounds: int) -> list[tuple[str, str, str, int, float, float]]:
    """(label, query, order, hits on the first page, median ms, p90 ms) per query and order."""
    results = []
    with Store.from_url(url, ttl=None) as store:
        for label, query in QUERIES:
            for order in ("rank", "newest"):
                store.search(query, order=order)  # warm-up
                times = []
                for _ in range(rounds):
                    start = time.perf_counter_ns()
                    page = store.search(query, order=order)
                    times.append((time.perf_counter_ns() - start) / 1e6)
                times.sort()
                p90 = times[min(len(times) - 1, int(len(times) * 0.9))]
                results.append((label, query, order, len(page.hits), statistics.median(times), p90))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)

    from postgres_provision import provision_postgres, temporary_database

    with (
        provision_postgres(report=lambda s: print(s, file=sys.stderr)) as server,
        temporary_database(server, prefix="bench_search") as url,
    ):
        migrate(url)
        started = time.perf_counter()
        seed(url, args.messages)
        print(
            f"seeded {args.messages:,} messages and built the index in "
            f"{time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )
        results = measure(url, args.rounds)
    print(f"| search over {args.messages:,} messages (PostgreSQL) | order | hits | median ms |"
          " p90 ms | target |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- |")
    missed = 0
    for label, query, order, hits, median, p90 in results:
        ok = median <= TARGET_MS
        missed += not ok
        verdict = f"≤ {TARGET_MS:.0f} ms: {'met' if ok else 'MISSED'}"
        print(f"| {label}: `{query}` | {order} | {hits} | {median:.1f} | {p90:.1f} | {verdict} |")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
