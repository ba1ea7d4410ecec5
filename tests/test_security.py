"""Security: SQL metacharacters are data, never SQL; a role with data privileges only can run
every Store operation; a database password never shows in reprs, errors, logs or CLI output."""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, inspect, make_url, text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.pool import NullPool

import fault_workers
from fault_workers import opened_store, run_sql
from sqlsessions import (
    Message,
    Role,
    Session,
    SessionNotFoundError,
    SqlSessionsError,
    StorageError,
    Store,
    StoreConfig,
    ToolCall,
    ToolFunction,
    migrate,
)
from store_fixtures import recorded_statements

TABLES = {"sessions", "messages", "tool_calls", "session_metadata"}
MARKER = "zz_injected_marker"

NASTY = [
    f"'; DROP TABLE sessions; -- {MARKER}",
    f'"; DROP TABLE messages; -- {MARKER}',
    f"' OR '1'='1 {MARKER}",
    f"'); DELETE FROM session_metadata; -- {MARKER}",
    f"; COMMIT; DROP TABLE tool_calls; -- {MARKER}",
    "%s",
    "%(x)s",
    "%(sid)s",
    "%%",
    "%",
    "?",
    "??",
    ":name",
    ":sid",
    "$1",
    "$$ dollar $$",
    "$tag$ quoted $tag$",
    "\\",
    "\\'",
    "''",
    "'",
    '"',
    "`",
    "/* comment",
    "*/",
    "-- comment",
    "{0}",
    "{}",
    "_",
    "E'\\x41'",
    "\\x00 literal backslash",
    "a\r\nb\tc",
    "\u2019 \u02bc \uff07",  # quote look-alikes
    "\U0001f600'\U0001f600",
]


# --- SQL metacharacters are data ---------------------------------------------------------------


def nasty_session(index: int, value: str) -> Session:
    session = Session.new(value if value else f"empty-{index}", agent_id=value)
    session.add_message(Role.SYSTEM, value)
    session.add_message_with_tool_calls(
        Role.ASSISTANT,
        value,
        [
            ToolCall(
                id=value,
                type=value or "function",
                function=ToolFunction(name=value, arguments=value),
            )
        ],
    )
    session.messages.append(Message(role=Role.TOOL, content=value, name=value, tool_call_id=value))
    session.set_metadata(value, value)
    session.set_metadata("nested", {value: [value, {value: value}]})
    return session


def table_counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        names = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            return {
                table: conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
                for table in sorted(TABLES & names)
            }
    finally:
        engine.dispose()


def test_sql_metacharacters_are_stored_verbatim_and_never_change_a_query(
    store: Any, open_store: Any, migrated_url: str
) -> None:
    canary = store.get("canary")
    canary.add_message(Role.USER, "still here")
    canary.set_metadata("k", "v")
    store.save(canary)

    expected = {value: nasty_session(i, value) for i, value in enumerate(NASTY)}
    reader = open_store()
    with recorded_statements(store.engine) as log, recorded_statements(reader.engine) as log2:
        for session in expected.values():
            store.save(session)
        for value, session in expected.items():
            loaded = reader.get_if_exists(value)
            assert loaded.model_dump() == session.model_dump()
            assert reader.history(value) == session.messages
            assert [s.id for s in reader.list_sessions(agent_id=value).sessions] == [value]
            wanted = {value: value, "nested": session.metadata["nested"]}
            assert [s.id for s in reader.list_sessions(metadata=wanted).sessions] == [value]
            reader.touch(value)
            reader.append(value, Message(role=Role.USER, content=value))
        assert sorted(reader.list()) == sorted([*NASTY, "canary"])
        store.delete(NASTY[0])
        store.reap_expired()

    # Values travel as bound parameters: not one statement text contains them.
    assert log.statements and log2.statements
    for statement in log.statements + log2.statements:
        assert MARKER not in statement
        assert "1'='1" not in statement
    assert table_counts(migrated_url) == {
        "sessions": len(NASTY),  # all but the deleted one, plus the canary
        "messages": 4 * (len(NASTY) - 1) + 1,
        "tool_calls": len(NASTY) - 1,
        "session_metadata": 2 * (len(NASTY) - 1) + 1,
    }
    reader = open_store()
    assert [m.content for m in reader.get_if_exists("canary").messages] == ["still here"]
    assert reader.get_if_exists("canary").metadata == {"k": "v"}
    with pytest.raises(SessionNotFoundError):
        reader.get_if_exists(NASTY[0])


# --- a role with data privileges only ------------------------------------------------------------

OWNER_PASSWORD = "owner-Pa55word!"
APP_PASSWORD = "app-S3cret/with@chars:%"


def with_credentials(url: str, user: str, password: str) -> str:
    return make_url(url).set(username=user, password=password).render_as_string(hide_password=False)


class Roles:
    """An owning role (runs the migrations) and an application role (data privileges only)."""

    def __init__(self, admin_url: str, schema: str | None) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.admin_url = admin_url
        self.schema = schema
        self.owner = f"sqlsessions_owner_{suffix}"
        self.app = f"sqlsessions_app_{suffix}"
        self.owner_url = with_credentials(admin_url, self.owner, OWNER_PASSWORD)
        self.app_url = with_credentials(admin_url, self.app, APP_PASSWORD)
        self.database = make_url(admin_url).database

    def create(self, owner_can_create_schemas: bool = True) -> None:
        for role, password in ((self.owner, OWNER_PASSWORD), (self.app, APP_PASSWORD)):
            run_sql(
                self.admin_url,
                f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
                f"PASSWORD '{password}'",
            )
        run_sql(self.admin_url, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        if self.schema is None:
            run_sql(self.admin_url, f"GRANT CREATE ON SCHEMA public TO {self.owner}")
        elif owner_can_create_schemas:
            run_sql(self.admin_url, f'GRANT CREATE ON DATABASE "{self.database}" TO {self.owner}')
        else:  # the DBA made the schema for the owner; the owner cannot create schemas
            run_sql(self.admin_url, f"CREATE SCHEMA {self.schema} AUTHORIZATION {self.owner}")

    def grant_data_privileges(self) -> None:
        schema = self.schema or "public"
        run_sql(self.owner_url, f"GRANT USAGE ON SCHEMA {schema} TO {self.app}")
        run_sql(
            self.owner_url,
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {self.app}",
        )

    def drop(self) -> None:
        run_sql(
            self.admin_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE usename IN (:owner, :app)",
            {"owner": self.owner, "app": self.app},
        )
        run_sql(self.admin_url, f"DROP OWNED BY {self.owner}, {self.app} CASCADE")
        run_sql(self.admin_url, f"DROP ROLE IF EXISTS {self.app}")
        run_sql(self.admin_url, f"DROP ROLE IF EXISTS {self.owner}")


@pytest.fixture(params=[None, "agents"], ids=["public", "schema"])
def roles(postgres_url: str, request: pytest.FixtureRequest) -> Iterator[Roles]:
    made = Roles(postgres_url, request.param)
    try:
        yield made
    finally:
        made.drop()


def expire(url: str, schema: str | None, session_id: str) -> None:
    table = f"{schema}.sessions" if schema else "sessions"
    run_sql(
        url,
        f"UPDATE {table} SET expires_at = :t WHERE id = :id",
        {"t": datetime.now(timezone.utc) - timedelta(seconds=1), "id": session_id},
    )


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_role_with_only_data_privileges_can_run_every_store_operation(
    roles: Roles, kind: str
) -> None:
    roles.create()
    migrate(roles.owner_url, schema=roles.schema)  # migrations run as the owning role
    roles.grant_data_privileges()

    with pytest.raises(ProgrammingError, match="permission denied"):
        run_sql(roles.app_url, f"CREATE TABLE {roles.schema or 'public'}.intruder (x int)")
    with pytest.raises(ProgrammingError, match="must be owner"):
        run_sql(roles.app_url, f"ALTER TABLE {roles.schema or 'public'}.sessions ADD y int")

    with opened_store(roles.app_url, kind, schema=roles.schema) as store:
        session = store.get("chat")
        session.agent_id = "bot"
        session.add_message(Role.USER, "hi")
        session.add_message_with_tool_calls(
            Role.ASSISTANT, "", [ToolCall(id="c1", function=ToolFunction(name="f", arguments="{}"))]
        )
        session.add_tool_result("c1", "done")
        session.set_metadata("channel", "slack")
        store.save(session)
        session.trim(2)
        del session.metadata["channel"]
        store.save(session)
        store.append("chat", Message(role=Role.ASSISTANT, content="appended"))
        # The window widens back to the assistant message that made the call.
        assert [m.content for m in store.history("chat", limit=2)] == ["", "done", "appended"]
        assert [s.id for s in store.list_sessions(agent_id="bot").sessions] == ["chat"]
        assert store.list() == ["chat"]
        store.touch("chat")
        store.clear_cache()
        assert len(store.get_if_exists("chat").messages) == 3
        store.get("doomed")
        expire(roles.owner_url, roles.schema, "doomed")
        assert store.reap_expired() == 1
        store.delete("chat")
        assert store.list() == []


def test_migrations_run_as_the_owner_of_a_schema_made_by_the_dba(postgres_url: str) -> None:
    roles = Roles(postgres_url, "agents")
    try:
        roles.create(owner_can_create_schemas=False)
        migrate(roles.owner_url, schema="agents")
        with Store(StoreConfig(url=roles.owner_url, schema="agents")) as store:
            assert store.get("x").id == "x"
    finally:
        roles.drop()


# --- a password never shows ----------------------------------------------------------------------

PASSWORD = "pw-S3cr3t-Zebra"
ENCODED_PASSWORD = "p@ss:w/rd%Zebra-2"
UNREACHABLE = [
    f"postgresql://sqlsessions:{PASSWORD}@127.0.0.1:1/sessions",
    f"postgresql://sqlsessions:{quote(ENCODED_PASSWORD, safe='')}@127.0.0.1:1/sessions",
]
SECRETS = [PASSWORD, ENCODED_PASSWORD, quote(ENCODED_PASSWORD, safe=""), "S3cr3t", "Zebra"]


def assert_no_secret(text_: str) -> None:
    for secret in SECRETS:
        assert secret not in text_, f"{secret!r} leaked in: {text_[:2000]}"


def full_report(exc: BaseException) -> str:
    """The exception as a log or a crash would print it: the whole chain of causes."""
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)


def run_reaper_briefly(store: Any) -> None:
    """Let a background reaper fail a few sweeps (each one logged)."""
    if hasattr(store, "async_store"):
        import asyncio

        async def run() -> None:
            handle = store.async_store.start_reaper(interval=0.05)
            await asyncio.sleep(0.3)
            await handle.stop()

        store._loop.run_until_complete(run())
        return
    handle = store.start_reaper(interval=0.05)
    time.sleep(0.3)
    handle.stop()


@pytest.mark.parametrize("url", UNREACHABLE, ids=["plain", "url-encoded"])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_password_never_appears_in_reprs_errors_or_logs(
    url: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = StoreConfig(url=url)
    assert_no_secret(repr(config))
    assert "***" in repr(config)
    with opened_store(url, kind, engine_options={"echo": True, "echo_pool": "debug"}) as store:
        assert_no_secret(repr(store))
        assert_no_secret(repr(getattr(store, "async_store", store)))
        for operation in (
            lambda: store.get("x"),
            lambda: store.save(Session.new("x")),
            lambda: store.list_sessions(),
        ):
            with pytest.raises(StorageError) as caught:
                operation()
            assert isinstance(caught.value, SqlSessionsError)
            assert caught.value.__cause__ is not None
            assert_no_secret(full_report(caught.value))
        run_reaper_briefly(store)
    assert any(record.exc_info for record in caplog.records), "the failing sweeps were not logged"
    assert_no_secret(caplog.text)
    for record in caplog.records:
        assert_no_secret(record.getMessage())
        if record.exc_info and record.exc_info[1] is not None:
            assert_no_secret(full_report(record.exc_info[1]))


def test_the_cli_never_prints_a_password() -> None:
    from typer.testing import CliRunner

    from sqlsessions.cli import app

    runner = CliRunner()
    commands = [
        ["db", "upgrade"],
        ["db", "current"],
        ["db", "check"],
        ["sessions", "list"],
        ["sessions", "show", "x"],
        ["sessions", "delete", "x"],
        ["reap"],
        ["stats"],
        ["export"],
    ]
    for url in UNREACHABLE:
        for command in commands:
            for args, env in (
                (["--url", url, *command], {}),
                (command, {"SQLSESSIONS_DATABASE_URL": url}),
            ):
                result = runner.invoke(app, args, env=env)
                output = result.output + result.stderr
                assert result.exit_code != 0, (args, output)
                assert_no_secret(output)
                if result.exception is not None and not isinstance(result.exception, SystemExit):
                    assert_no_secret(full_report(result.exception))
                    pytest.fail(f"{command} crashed: {result.exception!r}")
                assert "Error" in output, (args, output)  # reported, not swallowed


def test_the_cli_masks_the_password_of_a_working_database(postgres_url: str) -> None:
    from typer.testing import CliRunner

    from sqlsessions.cli import app

    roles = Roles(postgres_url, None)
    try:
        roles.create()
        run_sql(postgres_url, f"ALTER ROLE {roles.owner} PASSWORD '{PASSWORD}'")
        url = with_credentials(postgres_url, roles.owner, PASSWORD)
        runner = CliRunner()
        for command in (
            ["db", "upgrade"],
            ["db", "current"],
            ["db", "check"],
            ["sessions", "list"],
        ):
            result = runner.invoke(app, ["--url", url, *command])
            output = result.output + result.stderr
            assert result.exit_code == 0, output
            assert_no_secret(output)
    finally:
        roles.drop()


# --- real password authentication (a private server that checks passwords) -------------------


@pytest.fixture(scope="module")
def password_server() -> Iterator[tuple[str, str]]:
    """(admin URL, role) on a private PostgreSQL server where `role` must give its password."""
    role = "sqlsessions_pw"
    with fault_workers.private_postgres() as server:
        run_sql(server.url, f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
        server.require_password(role)
        yield server.url, role


@pytest.mark.postgres
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_password_checked_by_the_server_never_appears_when_login_fails(
    password_server: tuple[str, str], kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    admin_url, role = password_server
    good = with_credentials(admin_url, role, PASSWORD)
    engine = create_engine(good, poolclass=NullPool)
    with engine.connect() as conn:  # the right password works ...
        assert conn.execute(text("SELECT current_user")).scalar() == role
    engine.dispose()
    migrate(good)
    with opened_store(good, kind) as store:
        assert_no_secret(repr(store))
        assert store.get("x").id == "x"
    wrong = with_credentials(admin_url, role, "Zebra-wrong-" + PASSWORD)
    with opened_store(wrong, kind) as store:  # ... and a wrong one is refused, unprinted
        with pytest.raises(StorageError, match="password authentication failed") as caught:
            store.get("x")
        assert_no_secret(full_report(caught.value))
        assert_no_secret(repr(store))
    assert_no_secret(caplog.text)


def test_migration_commands_on_an_unreachable_database_never_show_the_password() -> None:
    from sqlsessions.migrate import check, current, downgrade

    for url in UNREACHABLE:
        for command in (migrate, check, current, lambda u: downgrade(u, "base")):
            with pytest.raises(Exception) as caught:  # any error, as long as it hides it
                command(url)
            assert_no_secret(full_report(caught.value))


def test_migration_commands_wrap_driver_errors_in_storage_error() -> None:
    from sqlsessions.migrate import check, current

    for command in (migrate, check, current):
        with pytest.raises(StorageError) as caught:
            command(UNREACHABLE[0])
        assert caught.value.__cause__ is not None
