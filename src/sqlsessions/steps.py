"""Operations as sans-IO steps, and the drivers that run them on a connection.

An operation is a generator that yields `(statement, parameters)` steps and receives each
step's result; it knows nothing of how statements are executed. `drive_sync` and
`drive_async` run one on a connection (SQLAlchemy's, or the driver's own), counting the
statements done and ending a read snapshot the steps opened.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar

from sqlalchemy import Executable

from sqlsessions import statements as sql

T = TypeVar("T")

Step = tuple[Executable, "dict[str, Any] | list[dict[str, Any]] | None"]
Steps = Generator[Step, Any, T]


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


@dataclass
class Transaction:
    """Hooks an operation registers to run only once its transaction has committed."""

    on_commit: list[Callable[[], None]] = field(default_factory=list)
    statements_done: int = 0
    """How many statements succeeded: an operation that failed before any is safe to retry."""
    in_snapshot: bool = False
    """A transaction the steps opened themselves (a read snapshot, `open_snapshot`, or a
    row-scoped one) is open on the connection and must be ended."""

    def after_commit(self, action: Callable[[], None]) -> None:
        self.on_commit.append(action)

    def committed(self) -> None:
        for action in self.on_commit:
            action()


@dataclass(frozen=True)
class Operation(Generic[T]):
    """A unit of work: its steps, run in one transaction.

    `writes` makes SQLite take the write lock up front (BEGIN IMMEDIATE), so writers queue
    instead of failing to upgrade a read lock. `autocommit` is for a single statement that
    is atomic on its own (it runs without BEGIN/COMMIT, in one round trip), for writes that
    are harmless to repeat, and for reads that either need one statement or open a read
    snapshot (`snapshot`) for the rest.
    """

    steps: Callable[[Transaction], Steps[T]]
    writes: bool = False
    autocommit: bool = False
    direct: bool = False
    """Every statement is a fixed one the sync store may run precompiled on the driver."""
    snapshot: bool = False
    """The steps read one session from several statements and may open a read snapshot
    (`open_snapshot`) for them; the driver ends it when the steps end or fail."""


def _record(operation: Operation[Any], tx: Transaction, statement: Any) -> None:
    """Book-keeping after a step ran: statements done, and whether a snapshot is open."""
    if statement is sql.begin_read_snapshot or statement is sql.begin_transaction:
        if not operation.snapshot:
            raise TypeError("only an Operation(snapshot=True) may open a transaction itself")
        tx.in_snapshot = True
    elif statement is sql.end_read_snapshot:
        tx.in_snapshot = False
    else:
        tx.statements_done += 1


def drive_sync(operation: Operation[T], execute: Callable[..., Any], tx: Transaction) -> T:
    """Run the operation's steps to completion, each with `execute(statement, params)`."""
    steps = operation.steps(tx)
    try:
        step = next(steps)
        while True:
            result = execute(*step)
            _record(operation, tx, step[0])
            step = steps.send(result)
    except StopIteration as done:
        value: T = done.value
    except Exception:
        if tx.in_snapshot:  # leave the connection as found; a dead one is replaced anyway
            tx.in_snapshot = False
            with contextlib.suppress(Exception):
                execute(sql.abandon_read_snapshot)
        raise
    if tx.in_snapshot:
        tx.in_snapshot = False
        execute(sql.end_read_snapshot)
    return value


async def drive_async(
    operation: Operation[T], execute: Callable[..., Awaitable[Any]], tx: Transaction
) -> T:
    """`drive_sync` for an asyncio connection: the same steps, each result awaited."""
    steps = operation.steps(tx)
    try:
        step = next(steps)
        while True:
            result = await execute(*step)
            _record(operation, tx, step[0])
            step = steps.send(result)
    except StopIteration as done:
        value: T = done.value
    except Exception:
        if tx.in_snapshot:
            tx.in_snapshot = False
            with contextlib.suppress(Exception):
                await execute(sql.abandon_read_snapshot)
        raise
    if tx.in_snapshot:
        tx.in_snapshot = False
        await execute(sql.end_read_snapshot)
    return value


def open_snapshot(dialect: str) -> Steps[None]:
    """Steps making the reads that follow see one snapshot.

    PostgreSQL runs reads in autocommit, each statement with its own snapshot: this begins a
    REPEATABLE READ READ ONLY transaction (ended by `close_snapshot` or by the driver). SQLite
    runs every operation in a transaction, which is one snapshot already.
    """
    if dialect == "postgresql":
        yield sql.begin_read_snapshot, None


def close_snapshot(dialect: str) -> Steps[None]:
    """Steps ending the snapshot `open_snapshot` began (before any write)."""
    if dialect == "postgresql":
        yield sql.end_read_snapshot, None
