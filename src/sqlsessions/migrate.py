"""Alembic driven from code: upgrade, downgrade, current revision, history and drift check."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, create_engine, pool, text
from sqlalchemy.engine import URL

from sqlsessions.config import StoreConfig, normalize_url
from sqlsessions.engine import engine_options, is_database_error, wrap_error
from sqlsessions.errors import InvalidInputError, SchemaNotReadyError, SqlSessionsError
from sqlsessions.schema import metadata_for_schema

VERSION_TABLE = "sqlsessions_alembic_version"
UPGRADE_COMMAND = "sqlsessions db upgrade"

# Alembic keeps the running migration's context in module globals: two migrations in one
# process must never overlap, whatever the database. Across processes, PostgreSQL migrations
# queue on an advisory lock (`serialize_migrations`); SQLite's write lock does the same there.
_ALEMBIC_IN_PROCESS = threading.RLock()


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
        url = normalize_url(target)  # without ?prepare_threshold=: migrations never prepare,
        options = engine_options(url, StoreConfig(url=url))  # safe through any pooler
        engine, owned = create_engine(url, poolclass=pool.NullPool, **options), True
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


@lru_cache(maxsize=1)
def known_revisions() -> frozenset[str]:
    """Every revision this sqlsessions ships."""
    return frozenset(rev for rev, _down, _doc in history())


def newer_database_message(found: str) -> str:
    """What to say about a database migrated by a newer sqlsessions than this one."""
    return (
        f"the database is at revision {found}, newer than this sqlsessions "
        f"(knows up to {head_revision()}): upgrade the sqlsessions package"
    )


def check_known_revision(found: str | None) -> None:
    """SchemaNotReadyError when `found` is a revision this sqlsessions does not know."""
    if found is not None and found not in known_revisions():
        raise SchemaNotReadyError(newer_database_message(found))


def check_schema_name(schema: Any) -> str | None:
    """`schema` if None or a plain SQL identifier, else InvalidInputError."""
    if schema is not None and (not isinstance(schema, str) or not schema.isidentifier()):
        raise InvalidInputError("schema", "must be a plain SQL identifier")
    return schema


def _check_revision_text(revision: Any) -> str:
    if not isinstance(revision, str) or not revision.strip():
        raise InvalidInputError("revision", "must be a revision id, 'head' or 'base'")
    return revision


def _migration_lock_key(schema: str | None) -> int:
    """A stable 64-bit advisory lock key per PostgreSQL schema."""
    digest = hashlib.sha256(f"sqlsessions migrations {schema or ''}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def serialize_migrations(connection: Connection, schema: str | None = None) -> None:
    """On PostgreSQL, wait until no other sqlsessions migration of this schema is running:
    a transaction-scoped advisory lock, released when `connection`'s transaction ends."""
    if connection.dialect.name == "postgresql":
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _migration_lock_key(schema)}
        )


def _run_alembic(
    connection: Connection,
    schema: str | None,
    revision: str,
    action: Callable[[Config, str], None],
) -> None:
    """Run one Alembic command under both locks, after checking the database is one we know."""
    with _ALEMBIC_IN_PROCESS:
        serialize_migrations(connection, schema)
        check_known_revision(current_revision_of(connection, schema))
        try:
            action(alembic_config(connection, schema), revision)
        except (CommandError, RevisionError) as exc:
            raise InvalidInputError("revision", f"{revision!r}: {exc}") from exc


def upgrade_connection(
    connection: Connection, revision: str = "head", schema: str | None = None
) -> None:
    """Upgrade the database behind `connection` to `revision` (inside its transaction)."""
    _run_alembic(connection, schema, _check_revision_text(revision), command.upgrade)


def migrate(
    url_or_engine: str | URL | Engine | Connection,
    revision: str = "head",
    *,
    schema: str | None = None,
    distribute: bool = False,
) -> None:
    """Upgrade the database to `revision` (default: the newest); with `distribute`, also
    distribute the tables on Citus in the same transaction (see `sqlsessions.distribute`).

    Safe to run from several processes at once: on PostgreSQL they queue on an advisory lock.
    """
    check_schema_name(schema)
    _check_revision_text(revision)
    with _connection(url_or_engine) as conn:
        upgrade_connection(conn, revision, schema)
        if distribute:
            from sqlsessions.distribute import distribute_connection  # it imports this module

            distribute_connection(conn, schema)


def downgrade(
    url_or_engine: str | URL | Engine | Connection, revision: str, *, schema: str | None = None
) -> None:
    """Downgrade the database to `revision` (`base` removes every sqlsessions table)."""
    check_schema_name(schema)
    _check_revision_text(revision)
    with _connection(url_or_engine) as conn:
        _run_alembic(conn, schema, revision, command.downgrade)


def current_revision_of(connection: Connection, schema: str | None = None) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    opts: dict[str, Any] = {"version_table": VERSION_TABLE, "version_table_schema": schema}
    return MigrationContext.configure(connection, opts=opts).get_current_revision()


def current(
    url_or_engine: str | URL | Engine | Connection, *, schema: str | None = None
) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    check_schema_name(schema)
    with _connection(url_or_engine) as conn:
        return current_revision_of(conn, schema)


def drift(connection: Connection, schema: str | None = None) -> list[str]:
    """Differences between the database and the current models/migrations; empty when in sync."""
    problems: list[str] = []
    at, head = current_revision_of(connection, schema), head_revision()
    check_known_revision(at)
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
                type_ != "table" or name != VERSION_TABLE
            ),
        },
    )
    problems.extend(repr(diff) for diff in compare_metadata(context, metadata_for_schema(schema)))
    return problems


def check(
    url_or_engine: str | URL | Engine | Connection, *, schema: str | None = None
) -> list[str]:
    """Differences between the database and the migrations (see `drift`)."""
    check_schema_name(schema)
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
    check_known_revision(found)
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
