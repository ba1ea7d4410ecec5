# Generated from aio.py by tools/unasync.py: edit aio.py and regenerate.
"""Store: the Go package's session store, synchronous; executes `operations`."""

from __future__ import annotations

import builtins
import copy
import threading
import time
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL

from sqlsessions import compaction, item_reads, queries, search, tail, usage
from sqlsessions.compaction import ArchivedSegment, HistoryReplaced
from sqlsessions.config import DEFAULT_SESSION_TTL, StoreConfig, mask_password
from sqlsessions.direct import DirectExecutor
from sqlsessions.engine import (
    create_sync_engine,
    retry_delay_or_raise,
    retry_delays,
)
from sqlsessions.fork import fork
from sqlsessions.item_reads import ItemOrMessage
from sqlsessions.migrate import prepare_schema
from sqlsessions.models import Message, Session
from sqlsessions.operations import StoreCore
from sqlsessions.queries import SessionPage, SessionSummary
from sqlsessions.reaper import DEFAULT_BATCH_SIZE, ReaperThread, check_batch_size, reap_batch
from sqlsessions.row_security import row_security_on, with_row_scope
from sqlsessions.scope import Scope
from sqlsessions.search import SearchOrder, SearchPage
from sqlsessions.steps import Operation, Transaction, drive_sync
from sqlsessions.usage import PriceRow

T = TypeVar("T")


class Store:
    """Persistent session storage with the API of the Go `sessions.Store`.

    Runs on a SQLAlchemy engine (psycopg for PostgreSQL, sqlite3 for SQLite). Use it as a
    context manager or call `close()`. Thread-safe: one Store can serve a whole process.
    """

    def __init__(self, config: StoreConfig | None = None, *, engine: Engine | None = None) -> None:
        self.config = config or StoreConfig()
        self._engine = engine or create_sync_engine(self.config)
        self._owns_engine = engine is None
        self._core = StoreCore(
            self._engine.dialect.name,
            self.config.ttl,
            self.config.cache_size,
            schema=self.config.schema,
        )
        self._root = True
        self._ready = False
        self._ready_lock = threading.Lock()
        self._direct = DirectExecutor(
            self._engine, owned=self._owns_engine, engine_options=self.config.engine_options
        )
        self._row_security = row_security_on(self.config, self._engine.dialect.name)

    @classmethod
    def from_url(
        cls,
        url: str | URL,
        *,
        ttl: timedelta | float | None = DEFAULT_SESSION_TTL,
        schema: str | None = None,
        **options: Any,
    ) -> Store:
        """A store for `url` (postgresql://... or sqlite:///path.db)."""
        return cls(StoreConfig(url=url, ttl=ttl, schema=schema, **options))  # type: ignore[arg-type]

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine the store runs on."""
        return self._engine

    def __repr__(self) -> str:
        scope = "" if self._root else f", scope={self.scope!r}"
        return f"Store({mask_password(self._engine.url)!r}, ttl={self.config.ttl!r}{scope})"

    # --- scope ----------------------------------------------------------------------------

    @property
    def scope(self) -> Scope:
        """Whose sessions this store sees: an owner ('' unless scoped) and maybe one agent."""
        return self._core.scope

    @property
    def is_root(self) -> bool:
        """True for a store built from a URL or engine (it may make a view of any owner);
        False for a view made by `scoped`."""
        return self._root

    def scoped(self, owner: str | None = None, *, agent_id: str | None = None) -> Store:
        """A view of this store that sees and touches only `owner`'s sessions (of `agent_id`
        only, when given); a session outside the view is absent to it (never "forbidden").

        The view shares the engine and configuration, with its own cache; closing it never
        closes the engine. The root store may make any view; a view can only narrow (same
        owner; an agent added if it had none): anything else is InvalidInputError.
        """
        scope = self._core.scope.narrowed(owner, agent_id, root=self._root)
        view = copy.copy(self)  # same engine, config, executor and readiness
        vars(view).update(_core=self._core.view(scope), _root=False, _owns_engine=False)
        return view

    # --- the Go API ---------------------------------------------------------------------

    def get(self, session_id: str) -> Session:
        """The session with this id, created (and persisted) empty if it does not exist."""
        return self._run(self._core.get(session_id, create=True))

    def get_if_exists(self, session_id: str) -> Session:
        """The session with this id; SessionNotFoundError if it does not exist or expired."""
        return self._run(self._core.get(session_id, create=False))

    def save(self, session: Session) -> None:
        """Persist what changed in `session` and restart its TTL; ConflictError on a lost race."""
        self._run(self._core.save(session))

    def delete(self, session_id: str) -> None:
        """Remove a session and everything in it; deleting a missing session is not an error."""
        self._run(self._core.delete(session_id))

    def list(self) -> builtins.list[str]:
        """The ids of all live sessions."""
        return self._run(self._core.list_ids())

    def touch(self, session_id: str) -> None:
        """Restart a session's TTL without changing it; SessionNotFoundError if missing."""
        self._run(self._core.touch(session_id))

    # --- beyond the Go API ----------------------------------------------------------------

    def append(
        self,
        session_id: str,
        *messages: Message | dict[str, Any],
        idempotency_key: str | None = None,
    ) -> int:
        """Atomically add messages (positions assigned by the database; never conflicts).

        Creates the session if it does not exist. Returns the session's new version.
        Exactly once, even when a dropped connection makes the store retry: each call
        carries an idempotency key. Pass your own (1 to 64 characters) to make your own
        retries safe too: a call whose key already landed in the session writes nothing
        and returns the session's current version.
        """
        return self._run(self._core.append(session_id, messages, idempotency_key))

    def history(self, session_id: str, limit: int = 50) -> builtins.list[Message]:
        """The last `limit` messages, never opening on an orphaned tool result."""
        return self._run(queries.history(self._core.dialect, self.scope, session_id, limit))

    def last_messages(self, session_id: str, limit: int | None = None) -> builtins.list[Message]:
        """The last `limit` messages (every one when None), oldest first, exactly `limit` when
        there are that many (unlike `history`, no widening around tool results). A session
        that does not exist or has expired has no messages: the result is empty."""
        return self._run(tail.last_messages(self._core.dialect, self.scope, session_id, limit))

    def last_items(
        self, session_id: str, item_format: str, limit: int | None = None
    ) -> builtins.list[ItemOrMessage]:
        """`last_messages` for a framework adapter: each message written with an item in
        `item_format` comes back as that item (a dict, nothing else decoded), any other as
        its `Message`. One statement; an absent or expired session has none."""
        return self._run(
            item_reads.last_items(self._core.dialect, self.scope, session_id, item_format, limit)
        )

    def pop(self, session_id: str) -> Message | None:
        """Remove the session's last message and return it (None if it has none or is absent).

        Atomic and server-side: concurrent pops never return the same message, and a
        concurrent append is either before or after it. Restarts the session's TTL."""
        return self._run(tail.pop(self.scope, session_id, self.config.ttl))

    def clear(self, session_id: str) -> int:
        """Remove every message of the session server-side (metadata and the session stay);
        returns how many were removed (0 if the session is absent). Restarts the TTL."""
        return self._run(tail.clear(self.scope, session_id, self.config.ttl))

    def session_summary(self, session_id: str) -> SessionSummary:
        """One session's summary (message count, timestamps) without loading its messages;
        SessionNotFoundError if it does not exist or expired."""
        return self._run(queries.session_summary(self._core.dialect, self.scope, session_id))

    def list_sessions(
        self,
        agent_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> SessionPage:
        """A page of session summaries (newest update first) and the cursor of the next page."""
        return self._run(
            queries.list_sessions(
                self._core.dialect,
                self.scope,
                agent_id=agent_id,
                metadata=metadata,
                updated_after=updated_after,
                updated_before=updated_before,
                limit=limit,
                cursor=cursor,
            )
        )

    def search(
        self,
        query: str,
        agent_id: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
        order: SearchOrder = "rank",
    ) -> SearchPage:
        """Messages of live sessions matching `query` (words, "a phrase", OR, -word), best
        first (`order="newest"`: newest first), one page; pass `next_cursor` for the next."""
        return self._run(
            search.search(
                self._core.dialect,
                self.scope,
                query,
                agent_id=agent_id,
                limit=limit,
                cursor=cursor,
                order=order,
                language=self.config.search_language,
            )
        )

    def fork(self, session_id: str, new_id: str, at_seq: int | None = None) -> int:
        """Copy a session (its messages up to and including position `at_seq`, default all,
        with their tool calls, and its metadata) into a new session `new_id`, inside the
        database in one transaction. Records `parent_id`/`forked_at_seq` on the new session.
        Returns the number of messages copied; SessionNotFoundError if the source is missing,
        ConflictError if `new_id` exists."""
        return self._run(fork(self._core, session_id, new_id, at_seq))

    def replace_history(
        self,
        session_id: str,
        messages: builtins.list[Message | dict[str, Any]],
        *,
        expected_version: int | None = None,
    ) -> HistoryReplaced:
        """Atomically replace a session's messages (e.g. with a compacted summary), archiving
        the replaced ones as a segment you can read or restore. With `expected_version`,
        ConflictError (nothing changed) if the session moved past that version."""
        return self._run(
            compaction.replace_history(self._core, session_id, messages, expected_version)
        )

    def restore_history(
        self, session_id: str, segment: int, *, expected_version: int | None = None
    ) -> HistoryReplaced:
        """Make archived `segment` the session's messages again; the current ones are
        archived as a new segment (nothing is lost either way)."""
        return self._run(
            compaction.restore_history(self._core, session_id, segment, expected_version)
        )

    def archived_segments(self, session_id: str) -> builtins.list[ArchivedSegment]:
        """The segments `replace_history` archived for a session, oldest first."""
        return self._run(compaction.archived_segments(self._core.dialect, self.scope, session_id))

    def archived_history(self, session_id: str, segment: int) -> builtins.list[Message]:
        """The messages of one archived segment, in their original order."""
        return self._run(
            compaction.archived_history(self._core.dialect, self.scope, session_id, segment)
        )

    def set_model_prices(
        self, prices: dict[str, Any], effective_from: datetime | None = None
    ) -> int:
        """Record prices per million tokens ({model: ModelPrice or {"input", "output",
        "cached_input"}}) in effect from `effective_from` (default: always), for the cost
        columns of the usage views. Returns how many models were priced."""
        return self._run(usage.set_model_prices(self._core.dialect, prices, effective_from))

    def model_prices(self) -> builtins.list[PriceRow]:
        """Every recorded model price, by model and date."""
        return self._run(usage.model_price_rows(self._core.dialect))

    def reap_expired(self, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
        """Delete every expired session with its rows, `batch_size` per transaction."""
        check_batch_size(batch_size)
        self._ensure_ready()  # the sweep's statements depend on the server
        total = 0
        while True:
            batch = self._run(
                reap_batch(
                    self._core.dialect,
                    batch_size,
                    citus=self._core.citus,
                    schema=self.config.schema,
                )
            )
            total += batch.deleted
            if batch.exhausted:
                return total

    def start_reaper(
        self, interval: float = 60.0, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> ReaperThread:
        """Sweep expired sessions every `interval` s in a daemon thread; `handle.stop()`."""
        check_batch_size(batch_size)
        return ReaperThread(lambda: self.reap_expired(batch_size), interval).start()

    def clear_cache(self) -> None:
        """Empty this process's cache; storage is untouched."""
        self._core.clear_cache()

    def close(self) -> None:
        """Release the connections (the engine is disposed only if the store created it; a
        scoped view never disposes it)."""
        self._core.clear_cache()
        self._direct.release()
        if self._owns_engine:
            self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- execution ----------------------------------------------------------------------

    def _run(self, operation: Operation[T]) -> T:
        self._ensure_ready()
        if self._row_security:
            operation = with_row_scope(operation, self._core.scope.owner)
        delays = retry_delays()
        while True:
            tx = Transaction()
            try:
                result = self._execute(operation, tx)
            except Exception as exc:
                time.sleep(retry_delay_or_raise(exc, delays, self._engine.url, tx))
                continue
            tx.committed()
            return result

    def _execute(self, operation: Operation[T], tx: Transaction) -> T:
        if operation.direct and self._direct.usable:  # precompiled, on the DB-API cursor
            return self._direct.run(operation, tx)
        with self._engine.connect() as conn:
            return self._in_transaction(conn, operation, tx)

    @staticmethod
    def _in_transaction(conn: Connection, operation: Operation[T], tx: Transaction) -> T:
        if operation.autocommit:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            return drive_sync(operation, conn.execute, tx)
        if operation.writes:
            conn = conn.execution_options(sqlsessions_writes=True)
        with conn.begin():
            return drive_sync(operation, conn.execute, tx)

    def _ensure_ready(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            delays = retry_delays()
            while True:  # SQLite migrates under its write lock; retry if another writer holds it
                try:
                    with self._engine.connect() as conn:
                        conn = conn.execution_options(sqlsessions_writes=True)
                        with conn.begin():
                            prepare_schema(conn, self.config.auto_migrate, self.config.schema)
                    self._execute(self._core.detect_server(), Transaction())
                except Exception as exc:
                    time.sleep(retry_delay_or_raise(exc, delays, self._engine.url, Transaction()))
                    continue
                break
            self._ready = True
