"""Database fixtures shared by the whole suite: every behaviour runs on SQLite and PostgreSQL.

Fixtures (see SPEC §5):

- ``db_url`` (function): parametrized ``[sqlite]`` / ``[postgres]``; the URL of a fresh,
  empty database of that dialect. Tests using it run twice, once per dialect, and carry
  the ``sqlite`` / ``postgres`` marker (select with ``-m postgres``).
- ``sqlite_url`` (function): ``sqlite:////<tmp_path>/test.db``, a real file.
- ``postgres_url`` (function): a fresh database (``t_<8 hex>``) on the test server,
  dropped after the test.
- ``postgres_server_url`` (session): the server's admin URL (``postgresql+psycopg://``),
  from ``tests/postgres_provision.py``: ``SQLSESSIONS_TEST_POSTGRES_URL``, else Docker
  (testcontainers), else a throwaway ``pgserver``. For a database per module, use
  ``postgres_provision.temporary_database(postgres_server_url)`` in a module fixture.
- ``pgbouncer_server_url`` (session): a PgBouncer in transaction mode in front of that server
  (``tests/pgbouncer_provision.py``: ``SQLSESSIONS_TEST_PGBOUNCER_URL``, else Debian's
  ``pgbouncer`` started for the session); ``pgbouncer_url`` (function): the test's fresh
  database (``postgres_url``) reached through it.

Store behaviour tests (``open_store``) run on ``sqlite``, ``postgres``, ``postgres-schema``
(every table in a named schema) and ``pgbouncer`` (migrated directly on the server, stores
connected through PgBouncer; marker ``pgbouncer``).

Citus (SPEC §10): the behaviour, production (reaper), migration, CLI and analytics modules
(``CITUS_MODULES``) also run their ``db_url`` tests with ``[citus]``: on a Citus cluster from
``tests/citus_provision.py`` (``SQLSESSIONS_TEST_CITUS_URL``, else Docker, else
``../shared/citus/build-and-run.sh``), in a schema of its own. ``migrated_url`` there is a
schema at head with the tables distributed by session (4 shards each), shared by the
session's tests and emptied before each; ``db_url`` alone is a fresh, empty schema. Select
them with ``-m citus``. When Citus is required (``CI``, ``SQLSESSIONS_REQUIRE_POSTGRES`` or
``SQLSESSIONS_REQUIRE_CITUS`` set), a skipped Citus test fails, and so does a run that
selected Citus tests of which none passed.

PostgreSQL (and PgBouncer) is *required* when ``CI`` or ``SQLSESSIONS_REQUIRE_POSTGRES`` is
set (``.ci/run`` sets the latter). Then:

- a provisioning failure fails the PostgreSQL tests instead of skipping them;
- any PostgreSQL test reported as skipped (for whatever reason) is turned into a failure;
- a run in which no PostgreSQL test passed exits non-zero.

Otherwise an unavailable server only skips the PostgreSQL tests, with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any

import pytest

from citus_provision import provision_citus, temporary_schema
from citus_provision import with_search_path as _citus_search_path
from pgbouncer_provision import provision_pgbouncer, through_pgbouncer
from postgres_provision import provision_postgres, temporary_database
from store_fixtures import StoreOpener, stores_of_kind

REQUIRE_ENV = "SQLSESSIONS_REQUIRE_POSTGRES"
_PGBOUNCER_FIXTURES = {"pgbouncer_url", "pgbouncer_server_url"}
_POSTGRES_FIXTURES = {"postgres_url", "postgres_server_url", *_PGBOUNCER_FIXTURES}
_CITUS_FIXTURES = {"citus_url", "citus_server_url", "citus_migrated_url"}
_postgres_source = pytest.StashKey[str]()
_postgres_passed = pytest.StashKey[int]()
_postgres_missing = pytest.StashKey[str]()


def postgres_required() -> bool:
    """True in CI (``CI`` set) or when ``SQLSESSIONS_REQUIRE_POSTGRES`` is set."""
    return any(
        os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")
        for name in ("CI", REQUIRE_ENV)
    )


REQUIRE_CITUS_ENV = "SQLSESSIONS_REQUIRE_CITUS"
CITUS_MODULES = {
    "test_store",
    "test_production",
    "test_migrations",
    "test_cli",
    "test_analytics",
    "test_search",
    "test_fork",
    "test_compaction",
    "test_usage",
    "test_scopes",
    "test_scopes_transfer",
    "test_item_reads",
}
"""Modules whose `db_url` tests also run on Citus: the store's behaviour (both facades),
production semantics with the reaper, migrations, the CLI, the analytics views, usage,
search, fork, compaction, scoped stores (owners and agents) and the framework adapters'
read path."""
CITUS_TEST_SHARD_COUNT = 4
_citus_source = pytest.StashKey[str]()
_citus_passed = pytest.StashKey[int]()
_citus_missing = pytest.StashKey[str]()
_citus_collected = pytest.StashKey[bool]()


def citus_required() -> bool:
    """Citus tests must run (not skip): in CI, as PostgreSQL's must."""
    return postgres_required() or os.environ.get(REQUIRE_CITUS_ENV, "").strip().lower() not in (
        "",
        "0",
        "false",
        "no",
    )


# --- fixtures ----------------------------------------------------------------------


def provisioned(what: str, server: AbstractContextManager[str], required: bool) -> Iterator[str]:
    """Yield the URL `server` provides for the whole test session; when it cannot be had,
    fail the tests that need it if `required` (CI), else skip them with the reason."""
    stack = ExitStack()
    try:
        url = stack.enter_context(server)
    except Exception as exc:
        reason = str(exc)
    else:
        with stack:
            yield url
        return
    message = f"{what} unavailable: {reason}"
    if required:
        pytest.fail(f"{message}\n(required because CI or {REQUIRE_ENV} is set)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Admin URL of a real PostgreSQL server, provisioned once per test session."""

    def remember(source: str) -> None:
        request.config.stash[_postgres_source] = source

    yield from provisioned("PostgreSQL", provision_postgres(report=remember), postgres_required())


@pytest.fixture(scope="session")
def pgbouncer_server_url(postgres_server_url: str) -> Iterator[str]:
    """URL (database ``postgres``) of a PgBouncer in transaction mode in front of the test
    server, started once per test session."""
    yield from provisioned(
        "PgBouncer", provision_pgbouncer(postgres_server_url), postgres_required()
    )


@pytest.fixture
def pgbouncer_url(postgres_url: str, pgbouncer_server_url: str) -> str:
    """The test's fresh PostgreSQL database (`postgres_url`), reached through PgBouncer."""
    return through_pgbouncer(postgres_url, pgbouncer_server_url)


@pytest.fixture(scope="session")
def citus_server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a Citus coordinator's database, provisioned once per test session."""

    def remember(source: str) -> None:
        request.config.stash[_citus_source] = source

    yield from provisioned("Citus", provision_citus(report=remember), citus_required())


@pytest.fixture
def citus_url(citus_server_url: str) -> Iterator[str]:
    """A fresh, empty schema on the Citus cluster (first on the URL's search path)."""
    with temporary_schema(citus_server_url) as url:
        yield url


@pytest.fixture(scope="session")
def citus_distributed_schema(citus_server_url: str) -> Iterator[str]:
    """A schema at head with the tables distributed by session, shared by the session's
    tests (see `citus_migrated_url`)."""
    from sqlsessions.distribute import distribute

    with temporary_schema(citus_server_url, prefix="s") as url:
        migrate_head(url)
        distribute(url, shard_count=CITUS_TEST_SHARD_COUNT)
        yield url


@pytest.fixture
def citus_migrated_url(citus_distributed_schema: str) -> str:
    """The shared distributed schema, emptied (its tables distributed again if a test
    migrated them away)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from sqlsessions.distribute import distribute
    from sqlsessions.migrate import current, head_revision

    url = citus_distributed_schema
    if current(url) != head_revision():
        migrate_head(url)
        distribute(url, shard_count=CITUS_TEST_SHARD_COUNT)
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM sessions"))  # every other session's row cascades
            conn.execute(text("DELETE FROM model_prices"))  # the one table without sessions
    finally:
        engine.dispose()
    return url


def migrate_head(url: str) -> None:
    from sqlsessions import migrate

    migrate(url)


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    with temporary_database(postgres_server_url) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database file for one test."""
    return f"sqlite:///{tmp_path / 'test.db'}"


SCHEMA_VARIANT = "postgres-schema"
TEST_SCHEMA = "agents"
_VARIANTS = [
    pytest.param("sqlite", marks=pytest.mark.sqlite, id="sqlite"),
    pytest.param("postgres", marks=pytest.mark.postgres, id="postgres"),
]
_SCHEMA_VARIANT = pytest.param(SCHEMA_VARIANT, marks=pytest.mark.postgres, id=SCHEMA_VARIANT)
CITUS_VARIANT = "citus"
_CITUS_VARIANT = pytest.param(CITUS_VARIANT, marks=pytest.mark.citus, id=CITUS_VARIANT)
PGBOUNCER_VARIANT = "pgbouncer"
_PGBOUNCER_VARIANT = pytest.param(
    PGBOUNCER_VARIANT, marks=[pytest.mark.postgres, pytest.mark.pgbouncer], id=PGBOUNCER_VARIANT
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests using `db_url` run once per dialect; store behaviour tests (`open_store`) also
    on PostgreSQL with every table in a named schema (StoreConfig(schema=...)) and through
    PgBouncer in transaction mode."""
    if "db_variant" in metafunc.fixturenames:
        behaviour = "open_store" in metafunc.fixturenames
        extra = [_SCHEMA_VARIANT, _PGBOUNCER_VARIANT] if behaviour else []
        if metafunc.module.__name__.rpartition(".")[2] in CITUS_MODULES:
            extra.append(_CITUS_VARIANT)
        metafunc.parametrize("db_variant", [*_VARIANTS, *extra])


@pytest.fixture
def db_variant() -> str:
    """Which database `db_url` provides; parametrized by pytest_generate_tests."""
    return "sqlite"


@pytest.fixture
def db_url(request: pytest.FixtureRequest, db_variant: str) -> str:
    """A fresh database of each dialect in turn (the test runs once per dialect)."""
    # Resolved lazily so that SQLite-only runs never provision PostgreSQL.
    if db_variant == CITUS_VARIANT and "migrated_url" in request.fixturenames:
        url = request.getfixturevalue("citus_migrated_url")
        return url
    if db_variant == SCHEMA_VARIANT:
        # Stores get StoreConfig(schema=...); raw SQL in tests finds the tables by search_path.
        url: str = request.getfixturevalue("postgres_url")
        return with_search_path(url, TEST_SCHEMA)
    if db_variant == PGBOUNCER_VARIANT:
        return str(request.getfixturevalue("pgbouncer_url"))
    url = request.getfixturevalue(f"{db_variant}_url")
    return url


def with_search_path(url: str, schema: str) -> str:
    """`url` whose connections search `schema` first, built with SQLAlchemy's URL API
    (the URL may or may not carry a query string already)."""
    return _citus_search_path(url, schema)


@pytest.fixture
def db_schema(db_variant: str) -> str | None:
    """The PostgreSQL schema the test's tables live in (None: the default schema)."""
    return TEST_SCHEMA if db_variant == SCHEMA_VARIANT else None


# --- hooks: markers, and "skipping PostgreSQL in CI is a failure" -------------------


@pytest.hookimpl(tryfirst=True)  # before `-m` selection, so `-m postgres` sees these marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that request the dialect (or PgBouncer) fixtures directly get the marker too."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & _POSTGRES_FIXTURES and not item.get_closest_marker("postgres"):
            item.add_marker(pytest.mark.postgres)
        if "sqlite_url" in names and not item.get_closest_marker("sqlite"):
            item.add_marker(pytest.mark.sqlite)
        if names & _CITUS_FIXTURES and not item.get_closest_marker("citus"):
            item.add_marker(pytest.mark.citus)
        if names & _PGBOUNCER_FIXTURES and not item.get_closest_marker("pgbouncer"):
            item.add_marker(pytest.mark.pgbouncer)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if item.get_closest_marker("citus"):
        return _citus_report(item, report)
    if not item.get_closest_marker("postgres"):
        return report
    if report.when == "call" and report.passed:
        stash = item.config.stash
        stash[_postgres_passed] = stash.get(_postgres_passed, 0) + 1
    if report.skipped and postgres_required() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (
            f"PostgreSQL test skipped while PostgreSQL is required "
            f"(CI or {REQUIRE_ENV} is set): {reason}"
        )
    return report


def _citus_report(item: pytest.Item, report: pytest.TestReport) -> pytest.TestReport:
    """Count Citus passes; when Citus is required, a skipped Citus test is a failure."""
    stash = item.config.stash
    stash[_citus_collected] = True
    if report.when == "call" and report.passed:
        stash[_citus_passed] = stash.get(_citus_passed, 0) + 1
    if report.skipped and citus_required() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (
            f"Citus test skipped while Citus is required "
            f"(CI, {REQUIRE_ENV} or {REQUIRE_CITUS_ENV} is set): {reason}"
        )
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI, a green run must include at least one passing PostgreSQL test, and one passing
    Citus test whenever Citus tests were selected."""
    config = session.config
    if (
        citus_required()
        and exitstatus == pytest.ExitCode.OK
        and not config.option.collectonly
        and config.stash.get(_citus_collected, False)
        and not config.stash.get(_citus_passed, 0)
    ):
        config.stash[_citus_missing] = "no Citus test passed, but Citus is required"
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if (
        postgres_required()
        and exitstatus == pytest.ExitCode.OK
        and not config.option.collectonly
        and not config.stash.get(_postgres_passed, 0)
    ):
        config.stash[_postgres_missing] = (
            f"no PostgreSQL test passed, but PostgreSQL is required (CI or {REQUIRE_ENV} "
            "is set): were the postgres tests deselected?"
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    config = terminalreporter.config
    if source := config.stash.get(_postgres_source, ""):
        terminalreporter.write_line(source)
    if missing := config.stash.get(_postgres_missing, ""):
        terminalreporter.write_line(f"ERROR: {missing}", red=True, bold=True)
    if source := config.stash.get(_citus_source, ""):
        terminalreporter.write_line(source)
    if missing := config.stash.get(_citus_missing, ""):
        terminalreporter.write_line(f"ERROR: {missing}", red=True, bold=True)


# --- stores ----------------------------------------------------------------------------
# The behaviour suite runs every test body against Store and AsyncStore, on both dialects.


@pytest.fixture
def migrated_url(
    request: pytest.FixtureRequest, db_url: str, db_variant: str, db_schema: str | None
) -> str:
    """`db_url` with the sqlsessions schema migrated to head (through PgBouncer: migrated
    directly on the server, as a deployment would; on Citus: also distributed)."""
    from sqlsessions import migrate

    if db_variant == CITUS_VARIANT:  # the Citus schema is ready (see citus_migrated_url)
        return db_url
    direct = db_variant == PGBOUNCER_VARIANT
    migrate(request.getfixturevalue("postgres_url") if direct else db_url, schema=db_schema)
    return db_url


@pytest.fixture(params=["sync", "async"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """Which facade a behaviour test drives: `Store` or `AsyncStore`."""
    return str(request.param)


@pytest.fixture
def open_store(migrated_url: str, store_kind: str, db_schema: str | None) -> Iterator[StoreOpener]:
    """A factory `open_store(**StoreConfig options)` for stores on the test database;
    async stores come wrapped so the same test body drives them."""
    from sqlsessions import StoreConfig

    def open_one(**options: Any) -> Any:
        options.setdefault("schema", db_schema)
        return make(StoreConfig(url=options.pop("url", migrated_url), **options))

    with stores_of_kind(store_kind) as make:
        yield open_one


@pytest.fixture
def store(open_store: StoreOpener) -> Any:
    """A store with the default configuration on a migrated test database."""
    return open_store()
