"""Engines for the store: driver choice, SQLite pragmas and transaction mode, error wrapping."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sqlsessions.config import StoreConfig, mask_password, normalize_url
from sqlsessions.errors import SchemaNotReadyError, SqlSessionsError, StorageError
from sqlsessions.schema import json_text
from sqlsessions.steps import Transaction

SQLITE_BUSY_TIMEOUT_SECONDS = 5.0
RETRY_BUDGET_SECONDS = 30.0
"""How long an operation keeps retrying a locked SQLite database or a PostgreSQL deadlock."""


def engine_options(url: URL, config: StoreConfig) -> dict[str, Any]:
    """Our engine options, then the caller's `engine_options` (their `connect_args` merged)."""
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        connect_args["timeout"] = SQLITE_BUSY_TIMEOUT_SECONDS
    else:
        # psycopg's own default (5) prepares statements on the server, which is unsafe
        # behind a transaction-mode pooler: see StoreConfig.prepare_threshold.
        connect_args["prepare_threshold"] = config.prepare_threshold
    options: dict[str, Any] = {"json_serializer": json_text, **config.engine_options}
    options["connect_args"] = {**connect_args, **config.engine_options.get("connect_args", {})}
    return options


def create_sync_engine(config: StoreConfig) -> Engine:
    """A pooled engine for `config.url` (psycopg or sqlite3)."""
    url = normalize_url(config.url)
    engine = create_engine(url, **engine_options(url, config))
    _configure(engine, config)
    return engine


def create_asyncio_engine(config: StoreConfig) -> AsyncEngine:
    """A pooled asyncio engine for `config.url` (psycopg async or aiosqlite)."""
    url = normalize_url(config.url, asynchronous=True)
    engine = create_async_engine(url, **engine_options(url, config))
    _configure(engine.sync_engine, config)
    return engine


def _configure(engine: Engine, config: StoreConfig) -> None:
    if config.schema is not None and engine.dialect.name == "postgresql":
        engine.update_execution_options(schema_translate_map={None: config.schema})
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)


def _configure_sqlite(engine: Engine) -> None:
    """WAL, foreign keys, and BEGIN IMMEDIATE for writes so writers queue instead of failing."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_SECONDS * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get("sqlsessions_writes", False)
        # Straight to the driver: this runs for every transaction, so skip SQLAlchemy's
        # statement machinery for it.
        cursor = connection.connection.dbapi_connection.cursor()
        cursor.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        cursor.close()


def is_database_error(exc: BaseException) -> bool:
    """An error raised by SQLAlchemy or a database driver (to be wrapped, never leaked)."""
    module = type(exc).__module__.split(".")[0]
    return isinstance(exc, SQLAlchemyError) or module in {"psycopg", "sqlite3", "aiosqlite"}


_APPEND_KEY_INDEX = "ix_messages_session_id_owner_append_key"


def is_retryable(exc: BaseException) -> bool:
    """A transient contention error worth retrying the whole operation for."""
    if not is_database_error(exc):
        return False
    # SQLAlchemy wraps driver errors; ours from the BEGIN hook reach here unwrapped.
    message = str(exc.orig if isinstance(exc, DBAPIError) else exc).lower()
    return (
        "database is locked" in message
        or "database table is locked" in message
        or "deadlock detected" in message
        or "could not serialize access" in message
        # An append met its key on the unique index: two calls with one idempotency key
        # raced (one rolled back whole), or a repeated call's unguarded statement found the
        # key landed. The retry (guarded) finds those messages and returns the version.
        or _APPEND_KEY_INDEX in message
        or "unique constraint failed: messages.session_id, messages.owner, messages.append_key"
        in message
    )


def retry_delays() -> Iterator[float]:
    """Backoff delays (jittered, growing to 0.5 s) until the retry budget is spent."""
    deadline = time.monotonic() + RETRY_BUDGET_SECONDS
    delay = 0.005
    while time.monotonic() < deadline:
        yield delay * (0.5 + random.random())
        delay = min(delay * 2, 0.5)


def retry_delay_or_raise(
    exc: Exception, delays: Iterator[float], url: URL, tx: Transaction
) -> float:
    """How long to wait before retrying after `exc`; re-raises anything not to be retried.

    Errors that are not database errors propagate untouched; database errors are wrapped.
    A connection found dead before any statement succeeded (e.g. a pooled connection that
    outlived a server restart) is retried at once. In a transaction nothing can have been
    written then; an autocommit statement, though, may have committed before its reply was
    lost, so every autocommit operation is one whose repetition is harmless: reads; `delete`,
    `touch` and the reaper (idempotent); `append` (its idempotency key makes the repeat write
    nothing); get-or-create (an insert-if-absent, and never the first statement).
    """
    if not is_database_error(exc):
        raise exc
    stale = getattr(exc, "connection_invalidated", False) and tx.statements_done == 0
    delay = next(delays, None) if stale or is_retryable(exc) else None
    if delay is None:
        raise wrap_error(exc, url) from exc
    # An append whose key already landed: nothing to wait for, the retry (guarded) finds it.
    return 0.0 if _APPEND_KEY_INDEX in str(exc) else delay


_MISSING_OBJECT_SQLSTATES = {"42P01", "42703", "3F000"}  # undefined table, column, schema
_UNDEFINED_FUNCTION = "42883"
_OUR_FUNCTIONS = ("sqlsessions_append(",)  # created by the migrations (0009)


def is_missing_schema_object(exc: BaseException) -> bool:
    """A database error saying a sqlsessions table, column or function does not exist
    (dropped, or never migrated): the schema is not ready, nothing is wrong with the request."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in _MISSING_OBJECT_SQLSTATES:
        return True
    message = str(orig).lower()
    if sqlstate == _UNDEFINED_FUNCTION:
        return any(name in message for name in _OUR_FUNCTIONS)
    return type(orig).__name__ == "OperationalError" and (
        message.startswith("no such table") or message.startswith("no such column")
    )


def wrap_error(exc: BaseException, url: URL) -> SqlSessionsError:
    """A driver or SQLAlchemy error as a StorageError whose text never shows the password
    (SchemaNotReadyError when a sqlsessions table or column is missing)."""
    if isinstance(exc, SqlSessionsError):
        return exc
    if is_missing_schema_object(exc):
        detail = str(exc.orig if isinstance(exc, DBAPIError) else exc).splitlines()[0]
        return SchemaNotReadyError(
            f"the sqlsessions schema in {mask_password(url)} is incomplete ({detail}): "
            "run `sqlsessions db upgrade`"
        )
    detail = str(exc.orig) if isinstance(exc, DBAPIError) else str(exc)
    if isinstance(exc, SQLAlchemyError):
        detail = detail.split("\n(Background on this error")[0]
    if url.password:
        detail = detail.replace(str(url.password), "***")
    return StorageError(f"database error on {mask_password(url)}: {type(exc).__name__}: {detail}")
