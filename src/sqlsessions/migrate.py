"""Alembic driven from code: upgrade, downgrade, current revision, history and drift check."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, pool, text
from sqlalchemy.engine import URL

from sqlsessions.config import normalize_url
from sqlsessions.engine import is_database_error, wrap_error
from sqlsessions.errors import SchemaNotReadyError, SqlSessionsError
from sqlsessions.schema import metadata_for_schema

VERSION_TABLE = "sqlsessions_alembic_version"
SEARCH_INDEX_OBJECTS = ("messages_fts", "ix_messages_content_search", "search_vector")
"""Full-text search structures the migrations manage outside the table models (FTS5 tables
and their shadow tables on SQLite; the generated vector column and its index on PostgreSQL)."""


def is_search_index_object(name: str | None) -> bool:
    """True for the search structures `drift` leaves to the migrations."""
    return name is not None and name.startswith(SEARCH_INDEX_OBJECTS)


UPGRADE_COMMAND = "sqlsessions db upgrade"


def migrations_directory() -> Path:
    """Where the Alembic environment lives: inside the installed wheel, else the checkout."""
    package_dir = Path(__file__).resolve().parent
    for candidate in (package_dir / "_migrations", package_dir.parents[1] / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise SqlSessionsError("the sqlsessions migrations directory was not found")


def alembic_config(connection: Connection | None = None, schema: str | None = None) -> Config:
    """An Alembic Config for our migrations, bound to `connection` when given."""
    config = Config()
    config.set_main_option("script_location", str(migrations_directory()))
    config.attributes["connection"] = connection
    config.attributes["schema"] = schema
    return config


def head_revision() -> str:
    """The newest revision in the migrations."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise SqlSessionsError("the migrations have no head revision")
    return head


def history() -> list[tuple[str, str | None, str]]:
    """Every revision, newest first, as (revision, down_revision, message)."""
    script = ScriptDirectory.from_config(alembic_config())
    return [
        (rev.revision, _as_text(rev.down_revision), (rev.doc or "").strip())
        for rev in script.walk_revisions()
    ]


def _as_text(value: str | list[str] | tuple[str, ...] | None) -> str | None:
    return value if value is None or isinstance(value, str) else ", ".join(value)


@contextmanager
def _connection(target: str | URL | Engine | Connection) -> Iterator[Connection]:
    """A connection in a transaction; database errors come out wrapped (StorageError)."""
    if isinstance(target, Connection):
        engine, owned = target.engine, False
    elif isinstance(target, Engine):
        engine, owned = target, False
    else:
        engine, owned = create_engine(normalize_url(target), poolclass=pool.NullPool), True
    try:
        if isinstance(target, Connection):
            yield target
        else:
            with engine.begin() as conn:
                yield conn
    except Exception as exc:
        if is_database_error(exc):
            raise wrap_error(exc, engine.url) from exc
        raise
    finally:
        if owned:
            engine.dispose()


def upgrade_connection(
    connection: Connection, revision: str = "head", schema: str | None = None
) -> None:
    """Upgrade the database behind `connection` to `revision` (inside its transaction)."""
    command.upgrade(alembic_config(connection, schema), revision)


def migrate(
    url_or_engine: str | URL | Engine | Connection,
    revision: str = "head",
    *,
    schema: str | None = None,
) -> None:
    """Upgrade the database to `revision` (default: the newest)."""
    with _connection(url_or_engine) as conn:
        upgrade_connection(conn, revision, schema)


def downgrade(
    url_or_engine: str | URL | Engine | Connection, revision: str, *, schema: str | None = None
) -> None:
    """Downgrade the database to `revision` (`base` removes every sqlsessions table)."""
    with _connection(url_or_engine) as conn:
        command.downgrade(alembic_config(conn, schema), revision)


def current_revision_of(connection: Connection, schema: str | None = None) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    opts: dict[str, Any] = {"version_table": VERSION_TABLE, "version_table_schema": schema}
    return MigrationContext.configure(connection, opts=opts).get_current_revision()


def current(
    url_or_engine: str | URL | Engine | Connection, *, schema: str | None = None
) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    with _connection(url_or_engine) as conn:
        return current_revision_of(conn, schema)


def drift(connection: Connection, schema: str | None = None) -> list[str]:
    """Differences between the database and the current models/migrations; empty when in sync."""
    problems: list[str] = []
    at, head = current_revision_of(connection, schema), head_revision()
    if at != head:
        problems.append(f"database is at revision {at or 'none'}, migrations head is {head}")
        return problems
    translated = (
        connection.execution_options(schema_translate_map={None: schema}) if schema else connection
    )
    context = MigrationContext.configure(
        translated,
        opts={
            "compare_type": True,
            "compare_server_default": True,
            "version_table": VERSION_TABLE,
            "version_table_schema": schema,
            "include_schemas": schema is not None,
            "include_name": lambda name, type_, _parent: type_ != "schema" or name == schema,
            "include_object": lambda _o, name, type_, _r, _c: (
                not (type_ == "table" and name == VERSION_TABLE)
                and not is_search_index_object(name)
            ),
        },
    )
    problems.extend(repr(diff) for diff in compare_metadata(context, metadata_for_schema(schema)))
    return problems


def check(
    url_or_engine: str | URL | Engine | Connection, *, schema: str | None = None
) -> list[str]:
    """Differences between the database and the migrations (see `drift`)."""
    with _connection(url_or_engine) as conn:
        return drift(conn, schema)


def require_current(connection: Connection, schema: str | None = None) -> None:
    """Raise SchemaNotReadyError unless the database is at the newest revision."""
    table = f'"{schema}".{VERSION_TABLE}' if schema else VERSION_TABLE
    try:
        with connection.begin_nested():
            found = connection.execute(text(f"SELECT version_num FROM {table}")).scalar()
    except Exception:
        found = None
    head = head_revision()
    if found != head:
        raise SchemaNotReadyError(
            f"the database schema is at revision {found or 'none'}, not {head}: "
            f"run `{UPGRADE_COMMAND}` (or sqlsessions.migrate(url))"
        )


def prepare_schema(connection: Connection, auto_migrate: bool | None, schema: str | None) -> None:
    """Make sure a store can run: migrate (SQLite by default) or check the revision."""
    if auto_migrate is None:
        auto_migrate = connection.dialect.name == "sqlite"
    if auto_migrate:
        upgrade_connection(connection, "head", schema)
    else:
        require_current(connection, schema)
