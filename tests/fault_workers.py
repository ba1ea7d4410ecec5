"""Helpers for the reliability tests: stores by kind, a private PostgreSQL server that can be
restarted or made to check passwords, and the work run in child processes (importable, so
`multiprocessing` can spawn it).

The versions a killed writer saves are a pure function of the iteration number, so the parent
can tell exactly which version (if any) a session is at after the writer died mid-save.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.pool import NullPool

from postgres_provision import pgserver_instance, pgserver_url
from sqlsessions import AsyncStore, Message, Role, Store, StoreConfig, ToolCall, ToolFunction
from store_fixtures import BlockingAsyncStore

# --- stores ------------------------------------------------------------------------------


def open_store(url: str, kind: str, **options: Any) -> Any:
    """A `Store` (kind "sync") or a blocking wrapper of an `AsyncStore` (kind "async")."""
    config = StoreConfig(url=url, **options)
    if kind == "sync":
        return Store(config)
    return BlockingAsyncStore(AsyncStore(config), asyncio.new_event_loop())


@contextmanager
def opened_store(url: str, kind: str, **options: Any) -> Iterator[Any]:
    """`open_store` as a context manager that closes the store (and its event loop)."""
    store = open_store(url, kind, **options)
    try:
        yield store
    finally:
        store.close()
        loop = getattr(store, "_loop", None)
        if loop is not None:
            loop.close()


def sync_engine_of(store: Any) -> Any:
    """The synchronous Engine a store runs on (the sync face of an async engine)."""
    engine = store.engine
    return getattr(engine, "sync_engine", engine)


def run_sql(url: str, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
    """Run one statement on a short-lived connection and commit; the rows it returned."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(sql), params or {})
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


# --- a private PostgreSQL server -------------------------------------------------------------


@dataclass
class PrivateServer:
    """A throwaway pgserver instance owned by one test module."""

    url: str
    pgdata: Path
    _server: Any

    def restart(self) -> None:
        """Stop the server (fast: every connection is cut) and start it again."""
        from pgserver._commands import pg_ctl

        pg_ctl(
            ["-w", "-m", "fast", "-l", str(self.pgdata / "log"), "restart"],
            pgdata=self.pgdata,
            user=self._server.system_user,
            timeout=120,
        )

    def require_password(self, role: str) -> None:
        """Make `role` authenticate with its password (scram) on the Unix socket."""
        hba = self.pgdata / "pg_hba.conf"
        hba.write_text(f"local all {role} scram-sha-256\n" + hba.read_text())
        run_sql(self.url, "SELECT pg_reload_conf()")


@contextmanager
def private_postgres() -> Iterator[PrivateServer]:
    """A PostgreSQL server of our own (pgserver binaries), removed afterwards."""
    with pgserver_instance("sqlsessions-private-pg-") as server:
        url = pgserver_url(server.get_uri())
        yield PrivateServer(url=url, pgdata=server.pgdata, _server=server)


# --- versions written by a writer that gets killed --------------------------------------------

BATCH = 150
FILLER = "payload " * 30


def _batch(iteration: int) -> list[Message]:
    messages = []
    for j in range(BATCH):
        if j % 5 == 4:
            calls = [
                ToolCall(
                    id=f"c{iteration}-{j}-{k}",
                    function=ToolFunction(name="lookup", arguments=f'{{"i":{iteration},"k":{k}}}'),
                )
                for k in range(2)
            ]
            messages.append(Message(role=Role.ASSISTANT, content="", tool_calls=calls))
        else:
            messages.append(Message(role=Role.USER, content=f"v{iteration}-{j} {FILLER}"))
    return messages


def _clears(iteration: int) -> bool:
    return iteration % 3 == 0


def version_messages(iteration: int) -> list[Message]:
    """The messages a session holds once iteration `iteration` is saved (0: none)."""
    messages: list[Message] = []
    for i in range(1, iteration + 1):
        if _clears(i):
            messages = []
        messages.extend(_batch(i))
    return messages


def apply_iteration(session: Any, iteration: int) -> None:
    """Turn a session at version `iteration - 1` into version `iteration` (in memory)."""
    if _clears(iteration):
        session.clear()
    session.messages.extend(_batch(iteration))
    session.set_metadata("iteration", iteration)


_MESSAGE_INSERT = re.compile(r"^\s*INSERT INTO (\w+\.)?messages\b", re.IGNORECASE)


def save_versions(
    url: str,
    kind: str,
    session_id: str,
    committed: Any,
    paused: Any = None,
    pause_at: int | None = None,
) -> None:
    """Save version after version of one big session until killed.

    `committed.value` is set to each iteration once its save returned. With `pause_at`, the
    save of that iteration stops inside its transaction, right after its message rows were
    inserted, sets `paused` and sleeps (waiting to be killed).
    """
    store = open_store(url, kind)
    session = store.get(session_id)
    iteration = int(session.metadata.get("iteration", 0))
    armed = threading.Event()

    def hold_the_transaction_open(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        if armed.is_set() and _MESSAGE_INSERT.match(statement):
            paused.set()
            time.sleep(3600)

    event.listen(sync_engine_of(store), "after_cursor_execute", hold_the_transaction_open)
    while True:
        iteration += 1
        apply_iteration(session, iteration)
        if iteration == pause_at:
            armed.set()
        store.save(session)
        committed.value = iteration


# --- SQLite writers contending for the write lock -----------------------------------------------


def contend_on_sqlite(
    url: str, worker: int, threads: int, rounds: int, busy_timeout: float | None
) -> int:
    """Several threads of one process save and append at once; returns the writes done.

    `busy_timeout` (seconds) replaces SQLite's busy wait so contention reaches the store's
    own retry loop; any exception (e.g. StorageError "database is locked") propagates.
    """
    if busy_timeout is not None:
        import sqlsessions.engine

        sqlsessions.engine.SQLITE_BUSY_TIMEOUT_SECONDS = busy_timeout
    store = Store(StoreConfig(url=url))
    errors: list[BaseException] = []
    done = [0]
    lock = threading.Lock()

    def run(thread: int) -> None:
        try:
            for r in range(rounds):
                session = store.get(f"w{worker}-t{thread}")
                session.add_message(Role.USER, f"w{worker}-t{thread}-{r}")
                store.save(session)
                store.append("shared", {"role": "user", "content": f"w{worker}-t{thread}-{r}"})
                with lock:
                    done[0] += 2
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    store.close()
    if errors:
        raise errors[0]
    return done[0]


def first_use(url: str, worker: int, start: Any, failures: Any) -> None:
    """Open a store on a database nobody migrated yet, at the same moment as other workers;
    a failure is reported on the `failures` queue (and the process exits non-zero)."""
    start.wait(60)
    try:
        with Store(StoreConfig(url=url)) as store:
            session = store.get(f"first-{worker}")
            session.add_message(Role.USER, f"hello from {worker}")
            store.save(session)
    except BaseException:
        failures.put(f"worker {worker}:\n{traceback.format_exc()}")
        raise
