"""Behind PgBouncer in transaction mode (SPEC §10): safe with the default configuration, and
the one setting that changes it (`prepare_threshold`) reachable from StoreConfig, the URL
and the CLI.

PgBouncer hands each transaction whichever server connection is free, so a statement psycopg
prepared on the server for one client (named `_pg3_0`, `_pg3_1`, ... per client connection)
is found there by the next client: "prepared statement already exists", or worse, another
client's statement runs. The whole store behaviour suite also runs through PgBouncer (the
`pgbouncer` variant of `open_store`, tests/conftest.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event, make_url, text
from typer.testing import CliRunner

from sqlsessions import InvalidInputError, Message, Role, Store, StoreConfig, migrate
from sqlsessions.cli import app
from store_fixtures import BlockingAsyncStore, stores_of_kind

ROUNDS = 12
"""Executions of each statement per client: well above psycopg's default threshold (5)."""


@pytest.fixture
def pooled_url(postgres_url: str, pgbouncer_url: str) -> str:
    """A migrated database (migrated directly on the server) reached through PgBouncer."""
    migrate(postgres_url)
    return pgbouncer_url


StoreFactory = Callable[..., Any]


@pytest.fixture
def open_store_at(store_kind: str) -> Iterator[StoreFactory]:
    """`open_store_at(url, **StoreConfig options)`: a Store, or an AsyncStore driven blocking."""
    with stores_of_kind(store_kind) as make:
        yield lambda url, **options: make(StoreConfig(url=url, **options))


def with_threshold(url: str, value: str) -> str:
    """`url` with `?prepare_threshold=value` (built with the URL API: it may have a query)."""
    parsed = make_url(url).update_query_dict({"prepare_threshold": value})
    return parsed.render_as_string(hide_password=False)


def exercise(store: Any, session_id: str, rounds: int = ROUNDS) -> None:
    """Every kind of statement a store sends, `rounds` times, checking what it reads back."""
    for i in range(rounds):
        session = store.get(session_id)
        assert len(session.messages) == 2 * i
        session.add_message(Role.USER, f"question {i}")
        session.set_metadata("round", i)
        store.save(session)
        store.append(session_id, Message(role=Role.ASSISTANT, content=f"answer {i}"))
        assert [m.content for m in store.history(session_id, limit=2)] == [
            f"question {i}",
            f"answer {i}",
        ]
        assert session_id in store.list()


@pytest.mark.pgbouncer
def test_stores_taking_turns_through_pgbouncer_never_meet_each_others_prepared_statements(
    pooled_url: str, open_store_at: StoreFactory
) -> None:
    # Before the fix: DuplicatePreparedStatement ("_pg3_0" already exists) in the 2nd store.
    stores = [open_store_at(pooled_url, cache_size=0) for _ in range(3)]
    for i in range(ROUNDS):
        for n, store in enumerate(stores):
            exercise(store, f"chat-{n}-{i}", rounds=1)
    expected = sorted(f"chat-{n}-{i}" for n in range(3) for i in range(ROUNDS))
    for store in stores:
        assert sorted(store.list()) == expected


@pytest.mark.pgbouncer
def test_concurrent_stores_in_threads_through_pgbouncer_all_succeed(pooled_url: str) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            with Store(StoreConfig(url=pooled_url)) as store:
                exercise(store, f"thread-{n}")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with Store(StoreConfig(url=pooled_url)) as store:
        for n in range(6):
            assert len(store.get(f"thread-{n}").messages) == 2 * ROUNDS


# --- the setting: StoreConfig, URL, CLI --------------------------------------------------


def prepared_statements_on_server(store: Any) -> int:
    """How many statements the store's (single) pooled connection has prepared on the server."""
    query = text("SELECT count(*) FROM pg_prepared_statements")
    if isinstance(store, BlockingAsyncStore):

        async def count() -> int:
            async with store.async_store.engine.connect() as conn:
                return int((await conn.execute(query)).scalar_one())

        return int(store._loop.run_until_complete(count()))
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


ONE_CONNECTION = {"pool_size": 1, "max_overflow": 0}


@pytest.mark.parametrize(
    ("options", "in_url", "prepares"),
    [
        pytest.param({}, None, False, id="default"),
        pytest.param({"prepare_threshold": 0}, None, True, id="config"),
        pytest.param({}, "0", True, id="url"),
        pytest.param({}, "none", False, id="url-none"),
        pytest.param({"prepare_threshold": 2}, "2", True, id="both-agree"),
    ],
)
def test_server_side_prepares_happen_only_when_configured(
    postgres_url: str,
    open_store_at: StoreFactory,
    options: dict[str, Any],
    in_url: str | None,
    prepares: bool,
) -> None:
    migrate(postgres_url)  # direct to the server: prepared statements stay on our connection
    url = postgres_url if in_url is None else with_threshold(postgres_url, in_url)
    store = open_store_at(url, engine_options=ONE_CONNECTION, **options)
    exercise(store, "chat", rounds=4)
    assert (prepared_statements_on_server(store) > 0) is prepares


@pytest.mark.parametrize(
    ("url_suffix", "options"),
    [
        ("", {"prepare_threshold": -1}),
        ("", {"prepare_threshold": True}),
        ("", {"prepare_threshold": 1.5}),
        ("", {"prepare_threshold": "5"}),
        ("?prepare_threshold=-1", {}),
        ("?prepare_threshold=five", {}),
        ("?prepare_threshold=" + "9" * 5000, {}),
        ("?prepare_threshold=1&prepare_threshold=2", {}),
        ("?prepare_threshold=3", {"prepare_threshold": 4}),
    ],
)
def test_an_invalid_prepare_threshold_is_rejected_naming_the_field(
    url_suffix: str, options: dict[str, Any]
) -> None:
    with pytest.raises(InvalidInputError) as caught:
        StoreConfig(url="postgresql://u@localhost/db" + url_suffix, **options)
    assert caught.value.field == "prepare_threshold"


def test_the_url_parameter_is_not_passed_to_libpq_and_shows_in_the_config(
    postgres_url: str,
) -> None:
    url = with_threshold(postgres_url, "5")
    migrate(url)  # crashed before: psycopg got the string "5"
    with Store.from_url(url) as store:
        assert store.config.prepare_threshold == 5
        exercise(store, "chat", rounds=2)


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


CLI_COMMANDS = [["sessions", "list"], ["export"], ["stats"], ["reap"], ["demo"]]


@pytest.mark.parametrize(
    ("option", "in_url", "expected"),
    [
        pytest.param([], None, None, id="default"),
        pytest.param(["--prepare-threshold", "0"], None, 0, id="option"),
        pytest.param([], "3", 3, id="url"),
    ],
)
def test_the_cli_setting_reaches_every_driver_connection(
    postgres_url: str, option: list[str], in_url: str | None, expected: int | None
) -> None:
    url = postgres_url if in_url is None else with_threshold(postgres_url, in_url)
    thresholds: list[int | None] = []

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        thresholds.append(dbapi_connection.prepare_threshold)

    event.listen(Engine, "connect", on_connect)
    try:
        upgraded = cli(*option, "--url", url, "db", "upgrade")
        migrations, thresholds[:] = thresholds[:], []
        results = [cli(*option, "--url", url, *command) for command in CLI_COMMANDS]
    finally:
        event.remove(Engine, "connect", on_connect)
    assert upgraded.exit_code == 0, upgraded.output
    assert [r.exit_code for r in results] == [0] * len(CLI_COMMANDS), [r.output for r in results]
    assert set(thresholds) == {expected}
    assert set(migrations) == {None}  # a migration runs each statement once: never prepared


def test_a_negative_cli_prepare_threshold_is_a_usage_error() -> None:
    result = cli("--prepare-threshold", "-1", "--url", "sqlite:///unused.db", "sessions", "list")
    assert result.exit_code == 2
    assert "--prepare-threshold" in result.output
