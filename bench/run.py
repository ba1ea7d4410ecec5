"""Run the benchmark: every SPEC §7 row on SQLite and PostgreSQL, next to its baseline.

    .venv/bin/python -m bench                 # full run, both dialects (~10 minutes)
    .venv/bin/python -m bench --quick         # smoke run (< 2 minutes)
    .venv/bin/python -m bench --dialect sqlite --only save,append

SQLite runs on files in a temporary directory; PostgreSQL on fresh databases of a server
obtained exactly as the tests do (tests/postgres_provision.py: $SQLSESSIONS_TEST_POSTGRES_URL,
else Docker, else a throwaway pgserver). Prints a Markdown table, writes
bench/results/latest.json and the save-latency chart.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "tests"):  # `python bench/run.py` and postgres_provision
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from bench import report  # noqa: E402
from bench.adk import run_adk  # noqa: E402
from bench.fleet import run_fleet  # noqa: E402
from bench.frameworks import run_frameworks  # noqa: E402
from bench.harness import Row, Settings  # noqa: E402
from bench.prepared import run_prepared  # noqa: E402
from bench.scale import run_list, run_reaper  # noqa: E402
from bench.scenarios import Context, run_append, run_get, run_load, run_save  # noqa: E402
from sqlsessions import migrate  # noqa: E402

SCENARIOS: dict[str, Callable[[Context], list[Row]]] = {
    "save": run_save,  # SPEC §7 rows 1 and 7 (the blob design), and the chart
    "append": run_append,
    "load": run_load,
    "get": run_get,
    "list": run_list,
    "reaper": run_reaper,
    "fleet": run_fleet,  # PostgreSQL only: K agents at once
    "prepared": run_prepared,  # PostgreSQL: the cost of the PgBouncer-safe default
    "frameworks": run_frameworks,  # issue 11: each adapter against the framework's own backend
    "adk": run_adk,  # Google ADK adapter against ADK's DatabaseSessionService
}
ALIASES = {"blob": "save"}
RESULTS = ROOT / "bench" / "results"
DOCS_CHART = ROOT / "docs" / "perf-save-latency.png"

_started = time.perf_counter()


def say(message: str) -> None:
    print(f"[{time.perf_counter() - _started:6.1f}s] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes and few repeats: a smoke run in under 2 minutes",
    )
    parser.add_argument("--dialect", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only these scenarios (repeat or comma-separate): "
        f"{', '.join(SCENARIOS)} (blob = save)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=RESULTS / "latest.json",
        help="where to write the results (default: bench/results/latest.json)",
    )
    parser.add_argument(
        "--chart",
        type=Path,
        default=None,
        help="where to write the chart (default: docs/perf-save-latency.png "
        "for a full run of both dialects, else bench/results/)",
    )
    parser.add_argument(
        "--durable",
        action="store_true",
        help="PostgreSQL: keep durable commits (default: the benchmark databases use "
        "synchronous_commit=off, see bench/README.md)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 if any target is missed"
    )
    args = parser.parse_args(argv)
    names = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
    names = [ALIASES.get(n, n) for n in names]
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        parser.error(
            f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}"
        )
    args.scenarios = [n for n in SCENARIOS if n in names] if names else list(SCENARIOS)
    return args


# --- databases ----------------------------------------------------------------------------


@contextmanager
def sqlite_context(settings: Settings) -> Iterator[Context]:
    with tempfile.TemporaryDirectory(prefix="sqlsessions-bench-") as directory:

        @contextmanager
        def new_database(name: str) -> Iterator[str]:
            path = Path(directory) / f"{name}.db"
            try:
                yield f"sqlite:///{path}"
            finally:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)

        url = f"sqlite:///{Path(directory) / 'bench.db'}"
        migrate(url)
        yield Context("sqlite", url, settings, new_database, say)


@contextmanager
def postgres_context(
    settings: Settings, versions: dict[str, str], durable: bool
) -> Iterator[Context]:
    from postgres_provision import provision_postgres, temporary_database

    with provision_postgres(report=say) as server_url:
        versions["postgresql"] = _server_setting(server_url, "server_version")
        versions["postgresql_commits"] = "durable" if durable else "synchronous_commit=off"

        @contextmanager
        def new_database(name: str) -> Iterator[str]:
            with temporary_database(server_url, prefix=f"bench_{name}") as url:
                _prepare_database(url, durable)
                yield url

        with temporary_database(server_url, prefix="bench") as url:
            _prepare_database(url, durable)
            migrate(url)
            yield Context("postgresql", url, settings, new_database, say)


def _prepare_database(url: str, durable: bool) -> None:
    """Unless `durable`, make commits in this database skip the WAL flush wait
    (synchronous_commit=off, for every later connection): the machine's fsync latency
    would otherwise drown the client-side costs being compared (SQLite runs with the
    store's synchronous=NORMAL in WAL mode, which does not fsync on commit either)."""
    if durable:
        return
    engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            name = conn.execute(text("SELECT current_database()")).scalar_one()
            conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    finally:
        engine.dispose()


def _server_setting(url: str, name: str) -> str:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return str(conn.execute(text(f"SHOW {name}")).scalar_one())
    finally:
        engine.dispose()


# --- main ---------------------------------------------------------------------------------


def failed_row(name: str, label: str, dialect: str, exc: Exception) -> Row:
    """A table row saying a scenario (or the database setup) could not run."""
    return Row(
        name,
        label,
        dialect,
        None,
        None,
        "",
        None,
        "",
        None,
        note=f"failed: {type(exc).__name__}: {exc}",
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings.for_run(args.quick)
    load_start = os.getloadavg()
    if load_start[0] > 0.5:
        say(
            f"warning: the machine is busy (load average {load_start[0]:.2f}); "
            "absolute times and the concurrency rows will suffer"
        )
    dialects = ["sqlite", "postgresql"] if args.dialect == "both" else [args.dialect]
    say(
        f"{'quick' if args.quick else 'full'} run: {', '.join(dialects)}; "
        f"scenarios: {', '.join(args.scenarios)}"
    )
    rows: list[Row] = []
    chart: dict[str, dict] = {}
    versions: dict[str, str] = {}
    failures = 0
    for dialect in dialects:
        opener = (
            sqlite_context(settings)
            if dialect == "sqlite"
            else postgres_context(settings, versions, args.durable)
        )
        try:
            with opener as ctx:
                for name in args.scenarios:
                    say(f"{dialect}: {name}")
                    try:
                        rows.extend(SCENARIOS[name](ctx))
                    except Exception as exc:
                        failures += 1
                        traceback.print_exc()
                        rows.append(failed_row(name, f"{name} (failed)", dialect, exc))
                chart[dialect] = ctx.chart
        except Exception as exc:  # the database itself could not be set up
            failures += 1
            traceback.print_exc()
            rows.append(failed_row("setup", "database setup (failed)", dialect, exc))
    seconds = time.perf_counter() - _started
    machine = report.machine_info(versions.get("postgresql"))
    machine["postgresql_commits"] = versions.get("postgresql_commits")
    machine["load_average_1min"] = {"start": load_start[0], "end": os.getloadavg()[0]}
    print(report.table(rows))
    print()
    print(report.summary(rows))
    options = {
        "quick": args.quick,
        "durable": args.durable,
        "dialects": dialects,
        "scenarios": args.scenarios,
        "settings": vars(settings),
    }
    report.write_json(args.json, machine, options, rows, chart, seconds)
    say(f"results: {args.json}")
    chart_path = args.chart
    if chart_path is None:
        full = not args.quick and len(dialects) == 2
        chart_path = DOCS_CHART if full else RESULTS / "perf-save-latency.png"
    if report.write_chart([chart_path], chart):
        say(f"chart: {chart_path}")
    say(f"done in {seconds:.0f} s")
    if failures:
        return 2
    if args.strict and any(row.met is False for row in rows):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
