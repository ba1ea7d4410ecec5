"""Row-level security (PostgreSQL, opt-in): with it enabled, the application role reads and
writes only the owner its transaction set, whatever SQL it runs; the store sets that owner
per transaction, so nothing of it stays on a pooled server connection.

The application role here is a plain LOGIN role that does not own the tables (the owner and
superusers are never restricted by row-level security, as in production where migrations and
the reaper run as the owner).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool
from typer.testing import CliRunner

from app_role import application_role
from sqlsessions import (
    AsyncStore,
    InvalidInputError,
    Message,
    Role,
    SqlSessionsError,
    Store,
    StoreConfig,
    ToolCall,
    ToolFunction,
    migrate,
)
from sqlsessions.cli import app
from sqlsessions.distribute import DISTRIBUTION_COLUMNS
from sqlsessions.row_security import (
    POLICY_NAME,
    SCOPED_TABLES,
    disable_row_security,
    enable_row_security,
    row_scope_statement,
    row_security_status,
)
from store_fixtures import BlockingAsyncStore, stores_of_kind

OWNERS = ("acme", "globex")
SHARED_ID = "chat-1"


@pytest.fixture
def app_url(postgres_url: str) -> Iterator[str]:
    """The migrated test database, reached as a role that does not own the tables."""
    migrate(postgres_url)
    with application_role(postgres_url) as (_role, url):
        yield url


@pytest.fixture
def two_owners(postgres_url: str) -> None:
    """Both owners hold a session with the same id (written as the table owner)."""
    migrate(postgres_url)
    with Store.from_url(postgres_url) as root:
        for owner in OWNERS:
            scoped = root.scoped(owner)
            scoped.append(
                SHARED_ID,
                Message(role=Role.USER, content=f"secret of {owner}"),
            )
            session = scoped.get(SHARED_ID)
            session.set_metadata("tenant", owner)
            scoped.save(session)


def rows_seen(url: str, table: str, owner: str | None) -> list[Any]:
    """Every row of `table` a plain `SELECT *` returns as the connecting role, in a
    transaction whose row scope is `owner` (None: no scope set)."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            if owner is not None:
                conn.execute(row_scope_statement(owner))
            return list(conn.execute(text(f"SELECT * FROM {table}")))
    finally:
        engine.dispose()


StoreFactory = Callable[..., Any]


@pytest.fixture
def open_app_store(store_kind: str) -> Iterator[StoreFactory]:
    """`open_app_store(url, owner, **options)`: a row-secured store scoped to `owner`."""
    with stores_of_kind(store_kind) as make:
        yield lambda url, owner, **options: make(
            StoreConfig(url=url, row_security=True, **options)
        ).scoped(owner)


# --- the database enforces the scope --------------------------------------------------------


@pytest.mark.usefixtures("two_owners")
@pytest.mark.parametrize("table", SCOPED_TABLES)
def test_a_plain_select_as_the_app_role_returns_only_the_scope_it_set(
    postgres_url: str, app_url: str, table: str
) -> None:
    everything = rows_seen(postgres_url, table, None)
    assert len(rows_seen(app_url, table, None)) == len(everything)  # not enabled yet

    enable_row_security(postgres_url)

    for owner in OWNERS:
        seen = rows_seen(app_url, table, owner)
        assert all(row.owner == owner for row in seen)
        assert len(seen) == len([row for row in everything if row.owner == owner])
    assert rows_seen(app_url, table, None) == []  # no scope set: nothing at all
    assert len(rows_seen(postgres_url, table, None)) == len(everything)  # the owner role


@pytest.mark.usefixtures("two_owners")
def test_the_app_role_cannot_write_a_row_into_another_scope(
    postgres_url: str, app_url: str
) -> None:
    enable_row_security(postgres_url)
    engine = create_engine(app_url, poolclass=NullPool)
    try:
        with pytest.raises(DBAPIError, match="row-level security"), engine.begin() as conn:
            conn.execute(text("SET LOCAL sqlsessions.owner = 'acme'"))
            conn.execute(
                text(
                    "INSERT INTO session_metadata (session_id, owner, key, value)"
                    " VALUES ('chat-1', 'globex', 'planted', '1')"
                )
            )
        with engine.begin() as conn:  # a buggy caller's unfiltered delete
            conn.execute(text("SET LOCAL sqlsessions.owner = 'acme'"))
            deleted = conn.execute(text("DELETE FROM sessions WHERE id = 'chat-1'")).rowcount
        assert deleted == 1
    finally:
        engine.dispose()
    remaining = rows_seen(postgres_url, "sessions", None)
    assert [(row.id, row.owner) for row in remaining] == [(SHARED_ID, "globex")]
    assert [row.key for row in rows_seen(postgres_url, "session_metadata", None)] == ["tenant"]


@pytest.mark.usefixtures("two_owners")
def test_the_analytics_views_apply_the_policies_of_the_app_role(
    postgres_url: str, app_url: str
) -> None:
    enable_row_security(postgres_url)
    seen = rows_seen(app_url, "session_summary", "acme")
    assert len(seen) == 1 and seen[0].session_id == SHARED_ID
    assert rows_seen(app_url, "session_summary", None) == []


@pytest.mark.usefixtures("two_owners")
def test_disabling_row_security_gives_the_app_role_every_row_again(
    postgres_url: str, app_url: str
) -> None:
    assert enable_row_security(postgres_url).enabled
    status = disable_row_security(postgres_url)
    assert not status.enabled and status.not_enforced == SCOPED_TABLES
    assert len(rows_seen(app_url, "sessions", None)) == len(OWNERS)


def test_every_per_session_table_has_the_owner_policy_at_head(postgres_url: str) -> None:
    migrate(postgres_url)
    status = row_security_status(postgres_url)
    assert status.missing_policy == ()
    assert set(status.not_enforced) == {name for name, _ in DISTRIBUTION_COLUMNS}
    engine = create_engine(postgres_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            tables = (
                conn.execute(
                    text(
                        "SELECT c.relname FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid"
                        " WHERE p.polname = :name ORDER BY 1"
                    ),
                    {"name": POLICY_NAME},
                )
                .scalars()
                .all()
            )
    finally:
        engine.dispose()
    assert sorted(tables) == sorted(SCOPED_TABLES)


# --- the store sets its scope per transaction ----------------------------------------------


def test_a_row_secured_store_works_as_the_app_role_within_its_scope(
    postgres_url: str, app_url: str, open_app_store: StoreFactory, two_owners: None
) -> None:
    enable_row_security(postgres_url)
    acme = open_app_store(app_url, "acme")

    session = acme.get(SHARED_ID)
    assert [m.content for m in session.messages] == ["secret of acme"]
    acme.append(SHARED_ID, Message(role=Role.ASSISTANT, content="hello acme"))
    assert [m.content for m in acme.history(SHARED_ID, limit=10)] == [
        "secret of acme",
        "hello acme",
    ]
    acme.append("chat-2", Message(role=Role.USER, content="new"))
    assert sorted(acme.list()) == [SHARED_ID, "chat-2"]
    assert {s.id for s in acme.list_sessions().sessions} == {SHARED_ID, "chat-2"}
    acme.delete(SHARED_ID)

    globex = rows_seen(postgres_url, "messages", None)
    assert [row.content for row in globex if row.owner == "globex"] == ["secret of globex"]
    assert {row.session_id for row in globex if row.owner == "acme"} == {"chat-2"}


@pytest.mark.usefixtures("two_owners")
def test_a_repeated_append_key_under_row_security_writes_nothing_and_returns_the_version(
    postgres_url: str, app_url: str, open_app_store: StoreFactory
) -> None:
    enable_row_security(postgres_url)
    acme = open_app_store(app_url, "acme")
    call = ToolCall(id="c1", function=ToolFunction(name="f", arguments="{}"))
    turn = [
        Message(role=Role.ASSISTANT, content="calls", tool_calls=[call]),
        Message(role=Role.TOOL, content="result", tool_call_id="c1"),
    ]
    first = acme.append(SHARED_ID, *turn, idempotency_key="turn-1")
    # The repeat meets the key on the unique index inside the row-scoped transaction; the
    # store rolls that back and its retry finds the key landed.
    assert acme.append(SHARED_ID, *turn, idempotency_key="turn-1") == first
    assert acme.append(SHARED_ID, turn[0], idempotency_key="turn-1") == first
    contents = [m.content for m in acme.get(SHARED_ID).messages]
    assert contents == ["secret of acme", "calls", "result"]


def test_a_store_without_row_security_cannot_use_a_row_secured_database_as_the_app_role(
    postgres_url: str, app_url: str, store_kind: str
) -> None:
    enable_row_security(postgres_url)
    loop = asyncio.new_event_loop()
    store: Any = (
        Store.from_url(app_url)
        if store_kind == "sync"
        else BlockingAsyncStore(AsyncStore.from_url(app_url), loop)
    )
    try:
        with pytest.raises(SqlSessionsError):
            store.append("chat-9", Message(role=Role.USER, content="unscoped"))
    finally:
        store.close()
        loop.close()
    assert rows_seen(postgres_url, "sessions", None) == []


def test_the_row_scope_never_outlives_the_stores_transaction_on_its_connection(
    postgres_url: str, open_app_store: StoreFactory
) -> None:
    migrate(postgres_url)
    store = open_app_store(postgres_url, "acme", engine_options={"pool_size": 1, "max_overflow": 0})
    store.append(SHARED_ID, Message(role=Role.USER, content="hi"))
    store.history(SHARED_ID)
    store.get(SHARED_ID)
    assert scope_setting_on_pooled_connection(store) in (None, "")


def scope_setting_on_pooled_connection(store: Any) -> Any:
    """`sqlsessions.owner` as seen on the store's own pooled connection (pool of one)."""
    query = text("SELECT current_setting('sqlsessions.owner', true)")
    if isinstance(store, BlockingAsyncStore):

        async def read() -> Any:
            async with store.async_store.engine.connect() as conn:
                return (await conn.execute(query)).scalar()

        return store.run(read())
    with store.engine.connect() as conn:
        return conn.execute(query).scalar()


def test_row_scope_through_pgbouncer_stays_in_each_transaction(
    postgres_url: str, pgbouncer_url: str, open_app_store: StoreFactory
) -> None:
    migrate(postgres_url)
    store = open_app_store(pgbouncer_url, "acme")
    for turn in range(5):
        store.append(SHARED_ID, Message(role=Role.USER, content=f"turn {turn}"))
        engine = create_engine(pgbouncer_url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                setting = conn.execute(
                    text("SELECT current_setting('sqlsessions.owner', true)")
                ).scalar()
        finally:
            engine.dispose()
        assert setting in (None, "")
    assert len(store.history(SHARED_ID, limit=10)) == 5


# --- configuration and commands --------------------------------------------------------------


def test_row_security_on_sqlite_is_refused_naming_the_setting(sqlite_url: str) -> None:
    with pytest.raises(InvalidInputError, match="row_security"):
        Store(StoreConfig(url=sqlite_url, row_security=True))


def test_row_security_must_be_a_boolean() -> None:
    with pytest.raises(InvalidInputError, match="row_security"):
        StoreConfig(row_security="yes")  # type: ignore[arg-type]


def test_the_row_security_command_enables_reports_and_disables(postgres_url: str) -> None:
    migrate(postgres_url)
    runner = CliRunner()
    status = runner.invoke(app, ["--url", postgres_url, "db", "row-security"])
    assert status.exit_code == 0, status.output
    assert "row-level security: off" in status.output
    enabled = runner.invoke(app, ["--url", postgres_url, "db", "row-security", "enable"])
    assert enabled.exit_code == 0, enabled.output
    assert "row-level security: on" in enabled.output
    assert row_security_status(postgres_url).enabled
    disabled = runner.invoke(app, ["--url", postgres_url, "db", "row-security", "disable"])
    assert disabled.exit_code == 0 and "row-level security: off" in disabled.output


def test_the_row_security_command_on_sqlite_fails_in_one_line(sqlite_url: str) -> None:
    migrate(sqlite_url)
    result = CliRunner().invoke(app, ["--url", sqlite_url, "db", "row-security", "enable"])
    assert result.exit_code != 0
    assert "needs PostgreSQL" in result.output and "Traceback" not in result.output


# --- Citus ------------------------------------------------------------------------------------


@pytest.mark.citus
def test_on_citus_the_app_role_sees_only_its_scope_on_distributed_tables(citus_url: str) -> None:
    from sqlsessions.distribute import distribute

    migrate(citus_url)
    distribute(citus_url)
    schema = make_url(citus_url).query["options"]
    schema_name = str(schema).split("search_path=")[1].split(",")[0].strip()
    with Store.from_url(citus_url) as root:
        for owner in OWNERS:
            root.scoped(owner).append(SHARED_ID, Message(role=Role.USER, content=owner))
    enable_row_security(citus_url)
    with application_role(citus_url, schema_name) as (_role, app_url):
        for table in ("sessions", "messages"):
            seen = rows_seen(app_url, table, "acme")
            assert [row.owner for row in seen] == ["acme"]
            assert rows_seen(app_url, table, None) == []
        with Store(StoreConfig(url=app_url, row_security=True)) as app_store:
            acme = app_store.scoped("acme")
            acme.append(SHARED_ID, Message(role=Role.ASSISTANT, content="reply"))
            assert [m.content for m in acme.history(SHARED_ID)] == ["acme", "reply"]
    globex = [r.content for r in rows_seen(citus_url, "messages", None) if r.owner == "globex"]
    assert globex == ["globex"]


def test_an_owner_with_quotes_and_colons_is_set_as_that_exact_owner(
    postgres_url: str, app_url: str, open_app_store: StoreFactory
) -> None:
    enable_row_security(postgres_url)
    owner = "o'brien:team \\:x"
    store = open_app_store(app_url, owner)
    store.append(SHARED_ID, Message(role=Role.USER, content="quoted"))
    assert [m.content for m in store.history(SHARED_ID)] == ["quoted"]
    assert [row.owner for row in rows_seen(postgres_url, "sessions", None)] == [owner]
