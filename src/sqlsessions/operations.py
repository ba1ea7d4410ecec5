"""The store's behaviour, written once for the sync and the async store.

Each operation is a generator of steps (see `steps`); it knows nothing of how statements are
executed. `Store` drives these generators on a Connection, `AsyncStore` on an
AsyncConnection, each inside one transaction per operation (or in autocommit, where one
statement, or one read snapshot, suffices). Cache, TTL and conflict rules exist only here.
(`Operation`, `Transaction`, the drivers and `utcnow` are re-exported from `steps`.)
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Executable

from sqlsessions import statements as sql
from sqlsessions.append_operation import append_operation
from sqlsessions.cache import DEFAULT_CACHE_SIZE, SessionCache
from sqlsessions.changes import (
    StoredMetadata,
    StoredState,
    check_new_messages,
    checkpoint,
    metadata_as_json,
    plan_save,
    session_from_state,
    state_of,
)
from sqlsessions.errors import ConflictError, InvalidInputError, SessionNotFoundError
from sqlsessions.models import (
    MessageList,
    Session,
    check_session_fields,
    check_session_id,
)
from sqlsessions.scope import ROOT_SCOPE, Scope
from sqlsessions.steps import Operation as Operation
from sqlsessions.steps import Steps as Steps
from sqlsessions.steps import Transaction as Transaction
from sqlsessions.steps import close_snapshot, open_snapshot, plain_rows
from sqlsessions.steps import drive_async as drive_async
from sqlsessions.steps import drive_sync as drive_sync
from sqlsessions.steps import utcnow as utcnow

GET_OR_CREATE_ATTEMPTS = 100
"""How often `get` re-runs its load-or-create when each created row is deleted at once."""


@functools.cache
def dialect_statements(dialect: str) -> dict[str, Executable]:
    """The statements built per dialect, built once per process:
    every store and every scoped view shares them (so each is compiled once per engine)."""
    return {
        "insert_session": sql.insert_session_if_absent(dialect),
        "upsert_metadata": sql.upsert_metadata(dialect),
    }


class StoreCore:
    """Cache, TTL and concurrency rules, as operations any executor can run, in one scope."""

    def __init__(
        self,
        dialect: str,
        ttl: timedelta | None,
        cache_size: int = DEFAULT_CACHE_SIZE,
        scope: Scope = ROOT_SCOPE,
        schema: str | None = None,
    ) -> None:
        self.dialect = dialect
        self.schema = schema
        self.ttl = ttl
        self.scope = scope
        self.with_scope: Callable[[dict[str, Any]], dict[str, Any]] = scope.params.__or__
        """`params` with the scope's bind parameters added (scope_owner, scope_agent)."""
        self._cache = SessionCache(cache_size)
        # On PostgreSQL, reads and one-statement writes skip BEGIN/COMMIT (two round trips):
        # under READ COMMITTED each statement has its own snapshot inside a transaction too,
        # and a single statement is atomic on its own. SQLite keeps its transactions (a read
        # transaction there is one snapshot, and writers need BEGIN IMMEDIATE).
        self.single_statements_atomic = dialect == "postgresql"
        built = dialect_statements(dialect)
        self._insert_session = built["insert_session"]
        self._upsert_metadata = built["upsert_metadata"]
        self.citus = False
        """The server is a Citus coordinator (learnt at first use, see `detect_server`)."""
        self.server_known = False

    def view(self, scope: Scope) -> StoreCore:
        """A core for `scope` on the same server: its own cache, what was learnt shared."""
        core = StoreCore(self.dialect, self.ttl, self._cache.capacity, scope, self.schema)
        core.citus, core.server_known = self.citus, self.server_known
        return core

    def detect_server(self) -> Operation[None]:
        """Learn whether the PostgreSQL server is a Citus coordinator (one query, run once
        by the facade before its first operation; nothing is sent on SQLite)."""

        def steps(tx: Transaction) -> Steps[None]:
            postgresql = self.dialect == "postgresql"
            if postgresql and (yield sql.select_citus_extension, None).first() is not None:
                self.use_citus()
            self.server_known = True

        return Operation(steps, autocommit=self.single_statements_atomic)

    def use_citus(self) -> None:
        """Run appends as a short transaction of single-shard statements: Citus routes
        those faster than the one multi-CTE statement (see bench/citus.py)."""
        self.citus = True

    # --- cache ------------------------------------------------------------------------

    def clear_cache(self) -> None:
        """Forget every cached session (storage is untouched)."""
        self._cache.clear()

    def _remember(self, state: StoredState) -> None:
        self._cache.put(state)

    def _forget(self, session_id: str) -> None:
        self._cache.discard(session_id)

    def expiry(self, now: datetime) -> datetime | None:
        return None if self.ttl is None else now + self.ttl

    # --- reading ----------------------------------------------------------------------

    def get(self, session_id: str, *, create: bool) -> Operation[Session]:
        """Load a live session; when absent, create it (`create`) or raise SessionNotFoundError."""
        check_session_id(session_id)

        def steps(tx: Transaction) -> Steps[Session]:
            now = utcnow()
            # Each round loses only to a delete between our read and our insert (or between
            # our insert and our read of the winner's row): try again rather than fail.
            for _ in range(GET_OR_CREATE_ATTEMPTS):
                state = yield from self._load_state(session_id, now)
                if state is None:
                    if not create:
                        raise SessionNotFoundError(session_id)
                    state = yield from self._create_empty(session_id, now)
                    if state is None:
                        yield from self.check_not_another_agents(session_id, now)
                if state is not None:
                    tx.after_commit(functools.partial(self._remember, state))
                    return session_from_state(state)
            raise ConflictError(f"session {session_id!r} was removed each time it was created")

        return Operation(
            steps, autocommit=self.single_statements_atomic, direct=True, snapshot=True
        )

    def _load_state(self, session_id: str, now: datetime) -> Steps[StoredState | None]:
        """The live session's stored state (None if absent), all read from one snapshot.

        A cached state is used as is only when the session row is the same incarnation at
        the same version; it is caught up (new messages only) only within one incarnation.
        """
        cached = self._cache.get(session_id)
        params = self.with_scope({"sid": session_id, "now": now})
        head: Any = None
        if cached is not None:
            head = (yield sql.select_session_head, params).first()
            if head is None:
                self._forget(session_id)
                return None
            if cached.describes(head):  # unchanged: this one query is all a cached get costs
                return replace(cached, expires_at=head.expires_at)
        yield from open_snapshot(self.dialect)
        if cached is not None and self.single_statements_atomic:
            head = (yield sql.select_session_head, params).first()  # again, in the snapshot
        state: StoredState | None
        if cached is None:
            state = yield from self._load_full(session_id, now)
        elif head is None:
            state = None
        elif cached.describes(head):
            state = replace(cached, expires_at=head.expires_at)
        elif cached.can_catch_up_to(head):
            state = yield from self._catch_up(cached, head)
        else:  # rewritten, or another incarnation: nothing cached can be reused
            state = yield from self._load_full(session_id, now)
        yield from close_snapshot(self.dialect)
        if state is None:
            self._forget(session_id)
        return state

    def _load_full(self, session_id: str, now: datetime) -> Steps[StoredState | None]:
        row = (
            yield sql.select_live_session, self.with_scope({"sid": session_id, "now": now})
        ).first()
        if row is None:
            return None
        seqs, messages = yield from self._messages_after(session_id, 0)
        metadata_rows = (yield sql.select_metadata, self.with_scope({"sid": session_id})).all()
        return StoredState(
            session_id=session_id,
            owner=row.owner,
            agent_id=row.agent_id,
            created_at=row.created_at,
            updated_at=row.updated_at,
            expires_at=row.expires_at,
            version=row.version,
            rewrite_version=row.rewrite_version,
            last_seq=row.last_seq,
            count=len(messages),
            seq_log=seqs,
            message_log=messages,
            metadata_json=metadata_as_json(dict(metadata_rows)),
            incarnation=row.incarnation,
        )

    def _messages_after(
        self, session_id: str, after_seq: int
    ) -> Steps[tuple[list[int], list[Any]]]:
        params = self.with_scope({"sid": session_id, "after_seq": after_seq})
        rows = plain_rows((yield sql.select_messages_after, params))
        call_rows = plain_rows((yield sql.select_tool_calls_after, params)) if rows else []
        return sql.messages_from_rows(rows, call_rows)

    def _catch_up(self, cached: StoredState, head: Any) -> Steps[StoredState]:
        """Only appends happened since `cached`: fetch just the new messages."""
        seqs, messages = yield from self._messages_after(cached.session_id, cached.last_seq)
        return cached.extended(
            seqs,
            messages,
            updated_at=head.updated_at,
            expires_at=head.expires_at,
            version=head.version,
            rewrite_version=head.rewrite_version,
            last_seq=head.last_seq,
        )

    def _create_empty(self, session_id: str, now: datetime) -> Steps[StoredState | None]:
        """A new empty session; None if a concurrent writer's row was there (or came and went)."""
        state = StoredState(
            session_id=session_id,
            owner=self.scope.owner,
            agent_id=self.scope.new_session_agent,
            created_at=now,
            updated_at=now,
            expires_at=self.expiry(now),
            version=1,
            rewrite_version=1,
            last_seq=0,
            count=0,
            seq_log=[],
            message_log=[],
            incarnation=sql.new_incarnation(),
        )
        created = yield from self._insert_state(state, now)
        return state if created else None

    def check_not_another_agents(self, session_id: str, now: datetime) -> Steps[None]:
        """ConflictError when the id is taken by a live session of another agent of this
        owner (agents share their owner's id space); nothing when it is not."""
        if self.scope.agent_id is None:
            return
        params = self.with_scope({"sid": session_id, "now": now})
        holder = (yield sql.select_session_agent, params).first()
        if holder is not None and holder.agent_id != self.scope.agent_id:
            raise ConflictError(
                f"session id {session_id!r} is taken by another agent of this owner "
                "(session ids are unique per owner, shared by its agents)"
            )

    def _insert_state(self, state: StoredState, now: datetime) -> Steps[bool]:
        """Insert a new session row unless a live one exists (an expired one is replaced)."""
        yield sql.delete_expired_session, self.with_scope({"sid": state.session_id, "now": now})
        params = sql.session_row_params(
            state.session_id,
            owner=self.scope.owner,
            agent_id=state.agent_id,
            created_at=state.created_at,
            updated_at=state.updated_at,
            expires_at=state.expires_at,
            version=state.version,
            rewrite_version=state.rewrite_version,
            last_seq=state.last_seq,
            message_count=state.count,
            incarnation=state.incarnation,
        )
        inserted = (yield self._insert_session, params).first()
        return inserted is not None

    def list_ids(self) -> Operation[list[str]]:
        """The ids of every live session."""

        def steps(tx: Transaction) -> Steps[list[str]]:
            rows = (yield sql.select_live_ids, self.with_scope({"now": utcnow()})).all()
            return [row.id for row in rows]

        return Operation(steps, autocommit=self.single_statements_atomic, direct=True)

    # --- writing ----------------------------------------------------------------------

    def save(self, session: Session) -> Operation[None]:
        """Write what changed since `session` was loaded; ConflictError if someone else wrote."""
        if not isinstance(session, Session):
            raise InvalidInputError("session", f"must be a Session, not {type(session).__name__}")
        check_session_fields(session)
        self.scope.check_session(session.owner, session.agent_id)

        def steps(tx: Transaction) -> Steps[None]:
            now = utcnow()
            state = state_of(session)
            messages = session.messages
            pending = object()  # checkpoint of the message list as this save writes it
            if state is None:
                new_state = yield from self._save_new(session, now, pending)
            else:
                new_state = yield from self._save_changes(state, session, now, pending)

            def publish() -> None:
                session._stored = new_state
                if isinstance(messages, MessageList):
                    messages.retoken(pending, new_state)
                self._remember(new_state)

            tx.after_commit(publish)

        return Operation(steps, writes=True, direct=True)

    def _save_new(self, session: Session, now: datetime, pending: object) -> Steps[StoredState]:
        messages = list(session.messages)
        check_new_messages(messages, 0)
        checkpoint(session.messages, pending)
        metadata_json = metadata_as_json(session.metadata)
        count = len(messages)
        state = StoredState(
            session_id=session.id,
            owner=self.scope.owner,
            agent_id=session.agent_id,
            created_at=session.created_at,
            updated_at=session.updated_at,
            expires_at=self.expiry(now),
            version=1,
            rewrite_version=1,
            last_seq=count,
            count=count,
            seq_log=list(range(1, count + 1)),
            message_log=messages,
            metadata_json=metadata_json,
            incarnation=sql.new_incarnation(),
        )
        if not (yield from self._insert_state(state, now)):
            yield from self.check_not_another_agents(session.id, now)
            raise ConflictError(
                f"session {session.id!r} already exists and this Session object was not loaded "
                "from the store: load it with store.get(), apply your changes, and save that"
            )
        yield from self.insert_messages(session.id, 1, messages, now)
        yield from self._write_metadata(session.id, metadata_json, [])
        return state

    def _save_changes(
        self, state: StoredState, session: Session, now: datetime, pending: object
    ) -> Steps[StoredState]:
        plan = plan_save(state, session)
        checkpoint(session.messages, pending)
        version = state.version + 1
        last_seq = state.last_seq + len(plan.new_messages)
        expires_at = self.expiry(now)
        params = sql.session_row_params(
            session.id,
            owner=self.scope.owner,
            agent_id=session.agent_id,
            created_at=session.created_at,
            updated_at=session.updated_at,
            expires_at=expires_at,
            version=version,
            rewrite_version=version if plan.rewrites else state.rewrite_version,
            last_seq=last_seq,
            message_count=plan.kept + len(plan.new_messages),
            incarnation=state.incarnation,  # the row stays; a new token would go unused
        )
        update_params = {f"v_{name}": params[name] for name in sql.SESSION_WRITE_COLUMNS}
        update_params.update(
            sid=session.id,
            expected_version=state.version,
            expected_incarnation=state.incarnation,
            now=now,
            **self.scope.params,
        )
        result = yield sql.update_session_checked, update_params
        if result.rowcount != 1:
            raise ConflictError(
                f"session {session.id!r} was changed, deleted or expired since it was loaded "
                f"at version {state.version}; nothing was written. Load it again with "
                "store.get(), re-apply your change, and save; for pure appends use store.append()"
            )
        if plan.delete_outside:
            yield (
                sql.delete_messages_outside,
                self.with_scope(
                    {"sid": session.id, "keep_from": plan.keep_from, "keep_to": plan.keep_to}
                ),
            )
        yield from self.insert_messages(session.id, state.last_seq + 1, plan.new_messages, now)
        yield from self._write_metadata(session.id, plan.metadata_upserts, plan.metadata_deletes)
        metadata_json = state.metadata_json
        if plan.metadata_upserts or plan.metadata_deletes:
            kept_metadata = {
                k: v for k, v in metadata_json.items() if k not in plan.metadata_deletes
            }
            metadata_json = StoredMetadata({**kept_metadata, **plan.metadata_upserts})
        new_seqs = list(range(state.last_seq + 1, last_seq + 1))
        changes: dict[str, Any] = {
            "agent_id": session.agent_id,
            "created_at": session.created_at,
            "updated_at": session.updated_at,
            "expires_at": expires_at,
            "version": version,
            "rewrite_version": update_params["v_rewrite_version"],
            "last_seq": last_seq,
            "metadata_json": metadata_json,
        }
        if not plan.delete_outside:
            return state.extended(new_seqs, plan.new_messages, **changes)
        kept = slice(plan.kept_start, plan.kept_start + plan.kept)
        return StoredState(
            session_id=session.id,
            owner=state.owner,
            incarnation=state.incarnation,
            count=plan.kept + len(plan.new_messages),
            seq_log=state.seq_log[kept] + new_seqs,
            message_log=state.message_log[kept] + plan.new_messages,
            **changes,
        )

    def insert_messages(
        self,
        session_id: str,
        first_seq: int,
        messages: list[Any],
        now: datetime,
        append_key: str | None = None,
    ) -> Steps[None]:
        if not messages:
            return
        rows, call_rows = sql.message_rows(session_id, self.scope.owner, first_seq, messages, now)
        if append_key is not None:  # the first message carries the append's key
            for row in rows:
                row["append_key"] = None
            rows[0]["append_key"] = append_key
        yield sql.insert_message, rows
        if call_rows:
            yield sql.insert_tool_call, call_rows

    def _write_metadata(
        self, session_id: str, upserts: dict[str, str], deletes: list[str]
    ) -> Steps[None]:
        owner = self.scope.owner
        if deletes:
            yield (
                sql.delete_metadata_key,
                [{"sid": session_id, "scope_owner": owner, "key": key} for key in deletes],
            )
        if upserts:
            yield (
                self._upsert_metadata,
                [
                    {
                        "session_id": session_id,
                        "owner": owner,
                        "key": key,
                        "value": json.loads(text),
                    }
                    for key, text in upserts.items()
                ],
            )

    def append(
        self, session_id: str, messages: tuple[Any, ...], idempotency_key: str | None = None
    ) -> Operation[int]:
        """Add messages at positions the database assigns, exactly once (`append_operation`)."""
        return append_operation(self, session_id, messages, idempotency_key)

    def delete(self, session_id: str) -> Operation[None]:
        """Remove a session and all its rows; a missing session is not an error."""
        check_session_id(session_id)

        def steps(tx: Transaction) -> Steps[None]:
            yield sql.delete_session, self.with_scope({"sid": session_id})
            tx.after_commit(lambda: self._forget(session_id))

        return Operation(steps, writes=True, autocommit=self.single_statements_atomic, direct=True)

    def touch(self, session_id: str) -> Operation[None]:
        """Restart a live session's TTL without changing its content."""
        check_session_id(session_id)

        def steps(tx: Transaction) -> Steps[None]:
            now = utcnow()
            expires_at = self.expiry(now)
            result = yield (
                sql.touch_session,
                self.with_scope({"sid": session_id, "now": now, "v_expires_at": expires_at}),
            )
            if result.rowcount != 1:
                raise SessionNotFoundError(session_id)

            def refresh_cache() -> None:
                cached = self._cache.get(session_id)
                if cached is not None:
                    self._cache.put(replace(cached, expires_at=expires_at))

            tx.after_commit(refresh_cache)

        return Operation(steps, writes=True, autocommit=self.single_statements_atomic, direct=True)
