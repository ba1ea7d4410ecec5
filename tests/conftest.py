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
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from pgbouncer_provision import provision_pgbouncer, through_pgbouncer
from postgres_provision import provision_postgres, temporary_database
from store_fixtures import BlockingAsyncStore, StoreOpener

REQUIRE_ENV = "SQLSESSIONS_REQUIRE_POSTGRES"
_PGBOUNCER_FIXTURES = {"pgbouncer_url", "pgbouncer_server_url"}
_POSTGRES_FIXTURES = {"postgres_url", "postgres_server_url", *_PGBOUNCER_FIXTURES}
_postgres_source = pytest.StashKey[str]()
_postgres_passed = pytest.StashKey[int]()
_postgres_missing = pytest.StashKey[str]()


def postgres_required() -> bool:
    """True in CI (``CI`` set) or when ``SQLSESSIONS_REQUIRE_POSTGRES`` is set."""
    return any(
        os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")
        for name in ("CI", REQUIRE_ENV)
    )


# --- fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Admin URL of a real PostgreSQL server, provisioned once per test session."""

    def remember(source: str) -> None:
        request.config.stash[_postgres_source] = source

    stack = ExitStack()
    try:
        url = stack.enter_context(provision_postgres(report=remember))
    except Exception as exc:
        reason = str(exc)
    else:
        with stack:
            yield url
        return
    message = f"PostgreSQL unavailable: {reason}"
    if postgres_required():
        pytest.fail(f"{message}\n(required because CI or {REQUIRE_ENV} is set)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pgbouncer_server_url(postgres_server_url: str) -> Iterator[str]:
    """URL (database ``postgres``) of a PgBouncer in transaction mode in front of the test
    server, started once per test session."""
    stack = ExitStack()
    try:
        url = stack.enter_context(provision_pgbouncer(postgres_server_url))
    except Exception as exc:
        reason = str(exc)
    else:
        with stack:
            yield url
        return
    message = f"PgBouncer unavailable: {reason}"
    if postgres_required():
        pytest.fail(f"{message}\n(required because CI or {REQUIRE_ENV} is set)", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def pgbouncer_url(postgres_url: str, pgbouncer_server_url: str) -> str:
    """The test's fresh PostgreSQL database (`postgres_url`), reached through PgBouncer."""
    return through_pgbouncer(postgres_url, pgbouncer_server_url)


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
        metafunc.parametrize("db_variant", [*_VARIANTS, *extra])


@pytest.fixture
def db_variant() -> str:
    """Which database `db_url` provides; parametrized by pytest_generate_tests."""
    return "sqlite"


@pytest.fixture
def db_url(request: pytest.FixtureRequest, db_variant: str) -> str:
    """A fresh database of each dialect in turn (the test runs once per dialect)."""
    # Resolved lazily so that SQLite-only runs never provision PostgreSQL.
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
    from sqlalchemy import make_url

    parsed = make_url(url)
    return parsed.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )


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
        if names & _PGBOUNCER_FIXTURES and not item.get_closest_marker("pgbouncer"):
            item.add_marker(pytest.mark.pgbouncer)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI, a green run must include at least one passing PostgreSQL test."""
    config = session.config
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


# --- stores ----------------------------------------------------------------------------
# The behaviour suite runs every test body against Store and AsyncStore, on both dialects.


@pytest.fixture
def migrated_url(
    request: pytest.FixtureRequest, db_url: str, db_variant: str, db_schema: str | None
) -> str:
    """`db_url` with the sqlsessions schema migrated to head (through PgBouncer: migrated
    directly on the server, as a deployment would)."""
    from sqlsessions import migrate

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
    import asyncio

    from sqlsessions import AsyncStore, Store, StoreConfig

    loop = asyncio.new_event_loop() if store_kind == "async" else None
    opened: list[Any] = []

    def open_one(**options: Any) -> Any:
        options.setdefault("schema", db_schema)
        config = StoreConfig(url=options.pop("url", migrated_url), **options)
        if loop is None:
            store: Any = Store(config)
        else:
            store = BlockingAsyncStore(AsyncStore(config), loop)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()
    if loop is not None:
        loop.close()


@pytest.fixture
def store(open_store: StoreOpener) -> Any:
    """A store with the default configuration on a migrated test database."""
    return open_store()
