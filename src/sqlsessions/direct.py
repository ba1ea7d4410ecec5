"""The sync store's hot path: our statements, compiled once, run on the pooled DB-API cursor.

SQLAlchemy's per-statement execution costs several times what sqlite3 or psycopg need for
the small statements a save or an append sends. For those operations `Store` runs the
very same Core statements (from `statements`), compiled once per engine with SQLAlchemy's
own bind and result processors, straight on the driver's cursor. Everything else (listing,
history, reaping, migrations) goes through SQLAlchemy as usual, and so does everything
while statement-level event listeners (e.g. tracing instrumentation) are attached.
"""

from __future__ import annotations

import functools
import operator
from collections import namedtuple
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import ARRAY, Engine, Executable
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sqlsessions.held_connections import HeldConnections
from sqlsessions.steps import Operation, Transaction, drive_async, drive_sync

Processor = Callable[[Any], Any]
T = TypeVar("T")


@dataclass(frozen=True)
class PreparedStatement:
    """A statement compiled for one engine: SQL text and how to bind and read values."""

    sql: str
    defaults: dict[str, Any]
    """Every bind name, with the value of those the statement fixes (literals)."""
    bind_processors: tuple[tuple[str, Processor], ...]
    row_type: Any
    result_processors: tuple[tuple[int, Processor], ...]
    """(column index, processor) of the result columns that have one."""
    make_row: Callable[[Any], Any] | None
    """A named row from a driver row, in C (`tuple.__new__` of the row type)."""
    in_order: Callable[[dict[str, Any]], tuple[Any, ...]] | None
    """The positional parameters from the named ones, in C (an itemgetter)."""

    def parameters(self, params: dict[str, Any]) -> Any:
        values = {**self.defaults, **params}
        for name, process in self.bind_processors:
            values[name] = process(values[name])
        if self.in_order is not None:
            return self.in_order(values)
        return values


class DirectResult:
    """The little of a SQLAlchemy Result the operations use: rows, first(), all(), rowcount,
    and `plain_rows()` (plain tuples, for readers that unpack rows by position: a long
    session's load then builds no named row at all)."""

    def __init__(
        self, rowcount: int, raw_rows: list[Any], prepared: PreparedStatement | None = None
    ) -> None:
        self.rowcount = rowcount
        self._raw_rows = raw_rows
        self._prepared = prepared
        self._rows: list[Any] | None = None if prepared is not None else raw_rows

    def _named(self) -> list[Any]:
        if self._rows is None:
            assert self._prepared is not None
            self._rows = StatementCache.rows(self._prepared, self._raw_rows)
        return self._rows

    def first(self) -> Any:
        rows = self._named()
        return rows[0] if rows else None

    def all(self) -> list[Any]:
        return self._named()

    def scalar(self) -> Any:
        rows = self.plain_rows()
        return rows[0][0] if rows else None

    def plain_rows(self) -> list[Any]:
        """The rows as plain tuples (see `steps.plain_rows`)."""
        prepared = self._prepared
        if prepared is None or not prepared.result_processors:
            return self._raw_rows
        return StatementCache.values(prepared, self._raw_rows)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._named())


class StatementCache:
    """Our fixed statements compiled once per engine, and their rows built without SQLAlchemy;
    shared by the sync and the asyncio executor (which differ only in how they do I/O)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self._sqlite = engine.dialect.name == "sqlite"
        self._schema_map = engine.get_execution_options().get("schema_translate_map")
        self._prepared: dict[int, tuple[Executable, PreparedStatement]] = {}

    @property
    def usable(self) -> bool:
        """False while anyone listens to the engine's statement events (tracing, metrics,
        tests counting statements): then everything goes through SQLAlchemy, so they see it."""
        events = self.engine.dispatch
        return not (events.before_cursor_execute or events.after_cursor_execute)

    def prepare(self, statement: Executable) -> PreparedStatement:
        """The compiled form of `statement` (cached by identity: statements are constants)."""
        found = self._prepared.get(id(statement))
        if found is not None and found[0] is statement:
            return found[1]
        element: Any = statement
        # Public compilation API only: the string (schema names rendered when a schema
        # translate map is in force), the bind parameters, and each type's processors.
        options: dict[str, Any] = {"dialect": self.dialect}
        if self._schema_map:
            options.update(schema_translate_map=self._schema_map, render_schema_translate=True)
        compiled: Any = element.compile(**options)
        binds = compiled.binds
        processors = tuple(
            (name, process)
            for name, bind in binds.items()
            if (process := bind.type.dialect_impl(self.dialect).bind_processor(self.dialect))
        )
        columns = getattr(element, "exported_columns", None) or ()
        names = list(columns.keys()) if columns else []
        row_type = namedtuple("Row", names) if names else None
        prepared = PreparedStatement(
            sql=self._binary_arrays(compiled.string, binds),
            defaults={name: bind.effective_value for name, bind in binds.items()},
            bind_processors=processors,
            row_type=row_type,
            result_processors=tuple(
                (index, process)
                for index, column in enumerate(columns)
                if (
                    process := column.type.dialect_impl(self.dialect).result_processor(
                        self.dialect, None
                    )
                )
            ),
            make_row=functools.partial(tuple.__new__, row_type) if row_type else None,
            in_order=_positional_getter(compiled.positiontup) if compiled.positional else None,
        )
        self._prepared[id(statement)] = (statement, prepared)
        return prepared

    def _binary_arrays(self, sql: str, binds: dict[str, Any]) -> str:
        """psycopg: array parameters sent in binary (`%(name)b`). In text, psycopg quotes
        every element with a regular-expression substitution per escaped character, which
        for a batch of JSON items cost more than the server's whole execution."""
        if self.dialect.driver != "psycopg" or self.dialect.paramstyle != "pyformat":
            return sql
        for name, bind in binds.items():
            if isinstance(bind.type, ARRAY):
                sql = sql.replace(f"%({name})s", f"%({name})b")
        return sql

    @staticmethod
    def rows(prepared: PreparedStatement, raw_rows: list[Any]) -> list[Any]:
        """Driver rows as named rows of Python values (SQLAlchemy's result processing)."""
        make_row = prepared.make_row
        assert make_row is not None  # only statements returning rows reach here
        if not prepared.result_processors:
            return list(map(make_row, raw_rows))
        return list(map(make_row, StatementCache.values(prepared, raw_rows)))

    @staticmethod
    def values(prepared: PreparedStatement, raw_rows: list[Any]) -> list[Any]:
        """Driver rows as plain tuples of Python values (each column's result processor).
        A NULL stays None, unprocessed (none of our column types maps NULL to a value), so a
        row whose processed columns are all NULL (e.g. messages without an item) is kept as
        the driver's tuple."""
        active = prepared.result_processors
        if len(active) == 1:  # the common case (a JSON column): one test per row
            (i, process), after = active[0], active[0][0] + 1
            return [
                raw if raw[i] is None else (*raw[:i], process(raw[i]), *raw[after:])
                for raw in raw_rows
            ]
        rows = []
        for raw in raw_rows:
            if all(raw[i] is None for i, _ in active):
                rows.append(raw)
                continue
            values = list(raw)
            for i, process in active:
                if values[i] is not None:
                    values[i] = process(values[i])
            rows.append(tuple(values))
        return rows


class DirectExecutor(StatementCache):
    """Runs operations on a pooled DB-API connection with statements compiled once."""

    def __init__(
        self,
        engine: Engine,
        *,
        owned: bool = False,
        engine_options: Mapping[str, Any] | None = None,
    ) -> None:
        """`owned`: the store created `engine` from `engine_options` (see `HeldConnections`)."""
        super().__init__(engine)
        self._held: HeldConnections[Any] = HeldConnections(engine, owned, engine_options)

    def run(self, operation: Operation[T], tx: Transaction) -> T:
        """Run `operation` in one transaction (or autocommit) on a pooled connection."""
        pooled, returned = self._held.take()
        for stale in returned:
            stale.close()
        if pooled is None:
            with self._held.waiting():
                pooled = self.engine.raw_connection()
        connection: Any = pooled.driver_connection
        finished = False
        try:
            result = self._run_on(connection, operation, tx)
            finished = True
            return result
        except Exception as exc:
            if _connection_is_dead(connection):
                pooled.invalidate(exc)
                exc.connection_invalidated = True  # type: ignore[attr-defined]
            raise
        finally:
            if not (finished and self._held.keep(pooled)):
                pooled.close()

    def release(self) -> None:
        """Return the connections held between operations to the pool."""
        for pooled in self._held.release():
            pooled.close()

    def _run_on(self, connection: Any, operation: Operation[T], tx: Transaction) -> T:
        cursor = connection.cursor()
        try:
            if operation.autocommit and not self._sqlite:
                connection.autocommit = True
                try:
                    return drive_sync(operation, self._executor(cursor), tx)
                finally:
                    if not _connection_is_dead(connection):  # else keep the real error
                        connection.autocommit = False
            if self._sqlite:
                cursor.execute("BEGIN IMMEDIATE" if operation.writes else "BEGIN")
            try:
                result = drive_sync(operation, self._executor(cursor), tx)
            except BaseException:
                connection.rollback()
                raise
            connection.commit()
            return result
        finally:
            cursor.close()

    def _executor(self, cursor: Any) -> Callable[[Executable, Any], DirectResult]:
        def execute(statement: Executable, params: Any = None) -> DirectResult:
            prepared = self.prepare(statement)
            if isinstance(params, list):
                cursor.executemany(prepared.sql, [prepared.parameters(p) for p in params])
                return DirectResult(cursor.rowcount, [])
            cursor.execute(prepared.sql, prepared.parameters(params or {}))
            if prepared.row_type is not None and _returns_rows(cursor):
                return DirectResult(cursor.rowcount, cursor.fetchall(), prepared)
            return DirectResult(cursor.rowcount, [])

        return execute


class AsyncDirectExecutor:
    """`DirectExecutor` for the asyncio engine: the same compiled statements, awaited on the
    driver's own asyncio connection (psycopg's AsyncConnection, aiosqlite's Connection),
    checked out and returned through SQLAlchemy's public `AsyncConnection` API."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        owned: bool = False,
        engine_options: Mapping[str, Any] | None = None,
    ) -> None:
        """`owned`: the store created `engine` from `engine_options` (see `HeldConnections`)."""
        self.engine = engine
        self.statements = StatementCache(engine.sync_engine)
        self._sqlite = engine.dialect.name == "sqlite"
        self._held: HeldConnections[AsyncConnection] = HeldConnections(
            engine.sync_engine, owned, engine_options
        )

    @property
    def usable(self) -> bool:
        """See `DirectExecutor.usable`."""
        return self.statements.usable

    async def run(self, operation: Operation[T], tx: Transaction) -> T:
        """Run `operation` in one transaction (or autocommit) on a pooled connection."""
        conn, returned = self._held.take()
        for stale in returned:
            await self._give_back(stale)
        if conn is None:
            with self._held.waiting():
                conn = await self.engine.connect()
        finished = False
        try:
            # The checked-out pooled connection, without `get_raw_connection()`'s extra
            # greenlet hop: a started Connection holds it (public `Connection.connection`).
            pooled = conn.sync_connection.connection  # type: ignore[union-attr]
            connection: Any = pooled.driver_connection
            try:
                if self._sqlite:
                    result = await self._run_sqlite(connection, operation, tx)
                else:
                    result = await self._run_postgresql(connection, operation, tx)
                finished = True
                return result
            except Exception as exc:
                if _connection_is_dead(connection):
                    await conn.invalidate(exc)
                    exc.connection_invalidated = True  # type: ignore[attr-defined]
                raise
        finally:
            if not (finished and self._held.keep(conn)):
                await self._give_back(conn)

    async def release(self) -> None:
        """Return the connections held between operations to the pool."""
        for conn in self._held.release():
            await self._give_back(conn)

    async def _give_back(self, conn: AsyncConnection) -> None:
        """Return `conn` to the pool as the pool lent it: not in autocommit (a connection the
        store holds stays in the mode of its last operation, see `_run_postgresql`)."""
        if not self._sqlite and not conn.invalidated:
            connection: Any = conn.sync_connection.connection.driver_connection  # type: ignore[union-attr]
            if connection.autocommit and not _connection_is_dead(connection):
                try:
                    await connection.set_autocommit(False)
                except Exception as exc:  # never hand the pool an autocommit connection
                    await conn.invalidate(exc)
        await conn.close()

    async def _run_postgresql(self, connection: Any, operation: Operation[T], tx: Transaction) -> T:
        # The connection keeps the mode of its last operation until `_give_back`: appends,
        # the commonest write, then switch nothing.
        if connection.autocommit != operation.autocommit:
            await connection.set_autocommit(operation.autocommit)
        if operation.autocommit:
            async with connection.cursor() as cursor:
                return await drive_async(operation, self._executor(cursor), tx)
        try:
            async with connection.cursor() as cursor:
                result = await drive_async(operation, self._executor(cursor), tx)
        except BaseException:
            await connection.rollback()
            raise
        await connection.commit()
        return result

    async def _run_sqlite(self, connection: Any, operation: Operation[T], tx: Transaction) -> T:
        cursor = await connection.cursor()
        try:
            await cursor.execute("BEGIN IMMEDIATE" if operation.writes else "BEGIN")
            try:
                result = await drive_async(operation, self._executor(cursor), tx)
            except BaseException:
                await connection.rollback()
                raise
            await connection.commit()
            return result
        finally:
            await cursor.close()

    def _executor(self, cursor: Any) -> Callable[[Executable, Any], Awaitable[DirectResult]]:
        statements = self.statements

        async def execute(statement: Executable, params: Any = None) -> DirectResult:
            prepared = statements.prepare(statement)
            if isinstance(params, list):
                await cursor.executemany(prepared.sql, [prepared.parameters(p) for p in params])
                return DirectResult(cursor.rowcount, [])
            await cursor.execute(prepared.sql, prepared.parameters(params or {}))
            if prepared.row_type is not None and _returns_rows(cursor):
                return DirectResult(cursor.rowcount, list(await cursor.fetchall()), prepared)
            return DirectResult(cursor.rowcount, [])

        return execute


def _positional_getter(names: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A function that takes the values of `names`, in order, from a dict, as a tuple."""
    if len(names) == 1:  # itemgetter of one name returns the value, not a 1-tuple
        (name,) = names
        return lambda values: (values[name],)
    if not names:
        return lambda values: ()
    return operator.itemgetter(*names)


def _connection_is_dead(connection: Any) -> bool:
    broken = getattr(connection, "broken", False)  # psycopg: the server went away
    closed = getattr(connection, "closed", False)
    return bool(broken or (closed is True))


def _returns_rows(cursor: Any) -> bool:
    """Whether the statement just executed produced a result set. psycopg builds its
    `description` (a column object each) anew on every access: ask its result instead."""
    result = getattr(cursor, "pgresult", None)
    if result is not None:
        return bool(result.nfields)
    return cursor.description is not None
