"""Helpers behind the store fixtures: one test body drives `Store` and `AsyncStore` alike."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, event

from sqlsessions import AsyncStore, Store, StoreConfig


class BlockingAsyncStore:
    """An AsyncStore whose coroutine methods are run to completion on a private event loop,
    so the behaviour suite's test bodies exercise it exactly like the sync Store."""

    def __init__(self, store: AsyncStore, loop: asyncio.AbstractEventLoop) -> None:
        self.async_store = store
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.async_store, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._loop.run_until_complete(attribute(*args, **kwargs))

        return call

    def scoped(self, owner: str | None = None, **kwargs: Any) -> BlockingAsyncStore:
        """The AsyncStore's scoped view, driven the same way."""
        return BlockingAsyncStore(self.async_store.scoped(owner, **kwargs), self._loop)

    def run(self, coroutine: Any) -> Any:
        """Run a coroutine of the caller's to completion on the store's loop."""
        return self._loop.run_until_complete(coroutine)

    @property
    def engine(self) -> Engine:
        return self.async_store.engine.sync_engine

    def __enter__(self) -> BlockingAsyncStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class StatementLog:
    """Statements an engine executed: (SQL text, number of parameter rows)."""

    entries: list[tuple[str, int]] = field(default_factory=list)

    @property
    def statements(self) -> list[str]:
        return [sql for sql, _ in self.entries]

    def matching(self, prefix: str, table: str | None = None) -> list[tuple[str, int]]:
        """Entries whose SQL starts with `prefix` (case-insensitive), touching `table` if given."""
        found = [
            (sql, rows)
            for sql, rows in self.entries
            if sql.lstrip().upper().startswith(prefix.upper())
        ]
        if table is not None:
            found = [(sql, rows) for sql, rows in found if _names_table(sql, table)]
        return found


def _names_table(sql: str, table: str) -> bool:
    words = sql.replace("(", " ").replace('"', " ").split()
    return table in words or any(word.endswith("." + table) for word in words)


@contextmanager
def recorded_statements(engine: Any) -> Iterator[StatementLog]:
    """Record every statement `engine` (sync or async) sends, with its parameter row count."""
    sync_engine: Engine = getattr(engine, "sync_engine", engine)
    log = StatementLog()

    def before(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        if statement.strip().upper() in {"BEGIN", "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"}:
            return
        rows = len(parameters) if many else 1
        log.entries.append((statement, rows))

    event.listen(sync_engine, "before_cursor_execute", before)
    try:
        yield log
    finally:
        event.remove(sync_engine, "before_cursor_execute", before)


StoreOpener = Callable[..., Any]


@contextmanager
def stores_of_kind(store_kind: str) -> Iterator[Callable[[StoreConfig], Any]]:
    """`make(config)`: a `Store`, or (`store_kind == "async"`) an `AsyncStore` driven blocking
    like one; every store made is closed, and the private event loop with them, afterwards."""
    loop = asyncio.new_event_loop() if store_kind == "async" else None
    opened: list[Any] = []

    def make(config: StoreConfig) -> Any:
        store: Any = Store(config) if loop is None else BlockingAsyncStore(AsyncStore(config), loop)
        opened.append(store)
        return store

    try:
        yield make
    finally:
        for store in opened:
            store.close()
        if loop is not None:
            loop.close()
