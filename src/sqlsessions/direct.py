"""The sync store's hot path: our statements, compiled once, run on the pooled DB-API cursor.

SQLAlchemy's per-statement execution costs several times what sqlite3 or psycopg need for
the small statements a save or an append sends. For those operations `Store` runs the
very same Core statements (from `statements`), compiled once per engine with SQLAlchemy's
own bind and result processors, straight on the driver's cursor. Everything else (listing,
history, reaping, migrations) goes through SQLAlchemy as usual, and so does everything
while statement-level event listeners (e.g. tracing instrumentation) are attached.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Engine, Executable

from sqlsessions.steps import Operation, Transaction, drive_sync

Processor = Callable[[Any], Any]
T = TypeVar("T")


@dataclass(frozen=True)
class PreparedStatement:
    """A statement compiled for one engine: SQL text and how to bind and read values."""

    sql: str
    defaults: dict[str, Any]
    """Every bind name, with the value of those the statement fixes (literals)."""
    positional: tuple[str, ...] | None
    bind_processors: tuple[tuple[str, Processor], ...]
    row_type: Any
    result_processors: tuple[Processor | None, ...]

    def parameters(self, params: dict[str, Any]) -> Any:
        values = {**self.defaults, **params}
        for name, process in self.bind_processors:
            values[name] = process(values[name])
        if self.positional is not None:
            return tuple([values[name] for name in self.positional])
        return values


class DirectResult:
    """The little of a SQLAlchemy Result the operations use: rows, first(), all(), rowcount."""

    def __init__(self, rowcount: int, rows: list[Any]) -> None:
        self.rowcount = rowcount
        self._rows = rows

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def all(self) -> list[Any]:
        return self._rows

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)


class DirectExecutor:
    """Runs operations on a pooled DB-API connection with statements compiled once."""

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
        compiled: Any = element.compile(dialect=self.dialect, schema_translate_map=self._schema_map)
        sql = compiled.string
        if self._schema_map:
            sql = compiled.preparer._render_schema_translates(sql, self._schema_map)
        processors = tuple(
            (name, process) for name, process in compiled._bind_processors.items() if process
        )
        columns: Sequence[Any] = compiled._result_columns
        prepared = PreparedStatement(
            sql=sql,
            defaults=compiled.construct_params(_check=False),
            positional=tuple(compiled.positiontup) if compiled.positional else None,
            bind_processors=processors,
            row_type=namedtuple("Row", [c.keyname for c in columns]) if columns else None,
            result_processors=tuple(
                c.type._cached_result_processor(self.dialect, None) for c in columns
            ),
        )
        self._prepared[id(statement)] = (statement, prepared)
        return prepared

    def run(self, operation: Operation[T], tx: Transaction) -> T:
        """Run `operation` in one transaction (or autocommit) on a pooled connection."""
        pooled = self.engine.raw_connection()
        connection: Any = pooled.driver_connection
        try:
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
        except Exception as exc:
            if _connection_is_dead(connection):
                pooled.invalidate(exc)
                exc.connection_invalidated = True  # type: ignore[attr-defined]
            raise
        finally:
            pooled.close()

    def _executor(self, cursor: Any) -> Callable[[Executable, Any], DirectResult]:
        def execute(statement: Executable, params: Any = None) -> DirectResult:
            prepared = self.prepare(statement)
            if isinstance(params, list):
                cursor.executemany(prepared.sql, [prepared.parameters(p) for p in params])
                return DirectResult(cursor.rowcount, [])
            cursor.execute(prepared.sql, prepared.parameters(params or {}))
            rows: list[Any] = []
            if prepared.row_type is not None and cursor.description is not None:
                make, processors = prepared.row_type, prepared.result_processors
                rows = [
                    make(*(p(v) if p else v for p, v in zip(processors, raw, strict=True)))
                    for raw in cursor.fetchall()
                ]
            return DirectResult(cursor.rowcount, rows)

        return execute


def _connection_is_dead(connection: Any) -> bool:
    broken = getattr(connection, "broken", False)  # psycopg: the server went away
    closed = getattr(connection, "closed", False)
    return bool(broken or (closed is True))
