"""The database fixtures themselves: both dialects are real, and every test's database is fresh."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, inspect, make_url, text

from pgbouncer_provision import ENV_URL as PGBOUNCER_ENV_URL
from pgbouncer_provision import provision_pgbouncer, through_pgbouncer
from postgres_provision import ENV_URL, provision_postgres, temporary_database
from sqlsessions import Role, Store, StoreConfig, migrate


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = create_engine(db_url)
    yield engine
    engine.dispose()


def test_db_url_connects_with_the_right_dialect(
    engine: Engine, request: pytest.FixtureRequest
) -> None:
    dialect = request.node.callspec.params["db_variant"]
    assert engine.dialect.name == {"sqlite": "sqlite", "postgres": "postgresql"}[dialect]
    with engine.connect() as conn:
        assert conn.execute(text("select 1")).scalar_one() == 1


def test_sqlite_url_is_a_real_file(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(text("create table t (x integer)"))
    engine.dispose()
    path = make_url(sqlite_url).database
    assert path is not None
    with open(path, "rb") as f:
        assert f.read(16) == b"SQLite format 3\x00"


def test_postgres_url_uses_psycopg_3(postgres_url: str) -> None:
    url = make_url(postgres_url)
    assert url.drivername == "postgresql+psycopg"
    assert url.database is not None and url.database.startswith("t_")


# The next two tests each create the same table: whichever runs second would find it
# if databases were shared between tests.
@pytest.mark.parametrize("run", ["first", "second"])
def test_each_test_gets_a_fresh_database(engine: Engine, run: str) -> None:
    assert inspect(engine).get_table_names() == []
    with engine.begin() as conn:
        conn.execute(text("create table leftover (x integer)"))
        conn.execute(text("insert into leftover values (1)"))
    assert inspect(engine).get_table_names() == ["leftover"]


def test_postgres_databases_are_distinct(postgres_url: str, postgres_server_url: str) -> None:
    assert make_url(postgres_url).database != make_url(postgres_server_url).database
    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        tables = conn.execute(
            text("select count(*) from information_schema.tables where table_schema = 'public'")
        ).scalar_one()
    engine.dispose()
    assert tables == 0


@pytest.mark.postgres
@pytest.mark.pgbouncer
def test_without_a_url_or_docker_a_throwaway_pgserver_is_used_and_pgbouncer_fronts_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # CI hands the suite a server by URL, so this keeps the fallback source covered, with a
    # PgBouncer reaching it by its Unix socket.
    monkeypatch.delenv(ENV_URL, raising=False)
    monkeypatch.delenv(PGBOUNCER_ENV_URL, raising=False)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    sources: list[str] = []
    with (
        provision_postgres(report=sources.append) as server_url,
        provision_pgbouncer(server_url) as pgbouncer_url,
        temporary_database(server_url) as database_url,
    ):
        assert sources and sources[0].startswith("PostgreSQL from pgserver")
        migrate(database_url)
        with Store(StoreConfig(url=through_pgbouncer(database_url, pgbouncer_url))) as store:
            for i in range(8):
                session = store.get("chat")
                session.add_message(Role.USER, f"hello {i}")
                store.save(session)
            assert len(store.get("chat").messages) == 8
