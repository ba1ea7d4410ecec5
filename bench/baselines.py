"""Hand-written baselines: the minimal statements for each operation on a raw driver
connection (sqlite3 / psycopg), and the original design (one JSON blob per session).

These are what a careful engineer would write by hand without the library. Each runs on
the same database as the store, with the same SQLite pragmas the store's engine sets.
SQL is written with ``?`` placeholders; `Raw.sql` turns them into psycopg's ``%s``.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import make_url

from sqlsessions.models import Message, Role, Session, ToolCall, ToolFunction

SQLITE_BUSY_TIMEOUT_MS = 5000


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Raw:
    """Raw DB-API connections to the database behind a SQLAlchemy URL."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.dialect = self.url.get_backend_name()
        self.pg = self.dialect == "postgresql"

    def connect(self, *, autocommit: bool = False) -> Any:
        """A connection configured like the store's.

        SQLite: autocommit mode of the sqlite3 module (transactions are explicit BEGINs),
        WAL, synchronous=NORMAL, foreign keys on, the same busy timeout.
        PostgreSQL: psycopg 3; `autocommit` as asked (else psycopg sends BEGIN itself); no
        server-side prepared statements, as the store's default (`bench/prepared.py`
        measures what preparing would change).
        """
        if self.pg:
            import psycopg

            query = dict(self.url.query)
            return psycopg.connect(
                dbname=self.url.database,
                user=self.url.username,
                password=self.url.password or None,
                host=query.get("host") or self.url.host,
                port=self.url.port,
                autocommit=autocommit,
                prepare_threshold=None,
            )
        conn = sqlite3.connect(self.url.database or "", isolation_level=None, timeout=5.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        return conn

    def sql(self, text: str) -> str:
        return text.replace("?", "%s") if self.pg else text

    def ts(self, value: datetime | None) -> Any:
        """A timestamp as the store keeps it: aware on PostgreSQL, naive-UTC text on SQLite."""
        if value is None or self.pg:
            return value
        return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(sep=" ")

    def ts_in(self, value: Any) -> datetime | None:
        if value is None or isinstance(value, datetime):
            return value
        return datetime.fromisoformat(value).replace(tzinfo=timezone.utc)

    def begin_write(self, conn: Any) -> None:
        """Start a write transaction (SQLite: BEGIN IMMEDIATE, as the store does;
        psycopg starts one by itself at the first statement)."""
        if not self.pg:
            conn.execute("BEGIN IMMEDIATE")

    def begin_read(self, conn: Any) -> None:
        if not self.pg:
            conn.execute("BEGIN")


MESSAGE_READ_COLUMNS = (
    "seq, role, content, name, tool_call_id, kind, item_format, item,"
    " model, input_tokens, output_tokens, cached_tokens, reasoning_tokens"
)
"""Every column a stored message has: a read that rebuilds the same messages needs them all
(framework items and usage came after the Go fields; reading only those would compare the
library's load with a cheaper read than the one it must do)."""
GO_MESSAGE_COLUMNS = "seq, role, content, name, tool_call_id"
"""The Go package's message fields only (the `load … vs Go-field dicts` context row)."""


def message_fields(row: Any, pg: bool) -> dict[str, Any]:
    """A `MESSAGE_READ_COLUMNS` row (without its seq) as Message fields (SQLite keeps the item
    as JSON text)."""
    _, role, content, name, tool_call_id, kind, item_format, item, *usage = row
    if item is not None and not pg:
        item = json.loads(item)
    model, input_tokens, output_tokens, cached_tokens, reasoning_tokens = usage
    return {
        "role": role,
        "content": content,
        "name": name,
        "tool_call_id": tool_call_id,
        "kind": kind,
        "item_format": item_format,
        "item": item,
        "model": model,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cached_tokens": cached_tokens,
        "reasoning_tokens": reasoning_tokens,
    }


def message_params(sid: str, seq: int, message: Message, now: Any) -> tuple[Any, ...]:
    return (sid, seq, message.role.value, message.content, message.name, message.tool_call_id, now)


INSERT_MESSAGE = (
    "INSERT INTO messages (session_id, seq, role, content, name, tool_call_id, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


# --- save: append one message to a loaded session (SPEC §7 row 1) -------------------------


class HandSave:
    """The minimal write for "one message appended since load": one version-checked UPDATE
    of the session row (TTL restarted) and one INSERT, in one transaction."""

    UPDATE = (
        "UPDATE sessions SET updated_at = ?, expires_at = ?, version = ?, last_seq = ?,"
        " message_count = message_count + 1"
        " WHERE id = ? AND owner = '' AND version = ? AND (expires_at IS NULL OR expires_at > ?)"
    )

    def __init__(self, raw: Raw, conn: Any, session_id: str, ttl: timedelta) -> None:
        self.raw, self.conn, self.sid, self.ttl = raw, conn, session_id, ttl
        row = conn.execute(
            raw.sql("SELECT version, last_seq FROM sessions WHERE id = ? AND owner = ''"),
            (session_id,),
        ).fetchone()
        conn.commit()
        self.version, self.last_seq = int(row[0]), int(row[1])
        self._update = raw.sql(self.UPDATE)
        self._insert = raw.sql(INSERT_MESSAGE)

    def save(self, message: Message) -> None:
        raw, conn = self.raw, self.conn
        now = utcnow()
        ts_now = raw.ts(now)
        seq = self.last_seq + 1
        raw.begin_write(conn)
        cur = conn.execute(
            self._update,
            (ts_now, raw.ts(now + self.ttl), self.version + 1, seq, self.sid, self.version, ts_now),
        )
        if cur.rowcount != 1:
            conn.rollback()
            raise RuntimeError(f"baseline save lost its version check on {self.sid}")
        conn.execute(self._insert, message_params(self.sid, seq, message, ts_now))
        conn.commit()
        self.version += 1
        self.last_seq = seq


# --- append: server-side position, one statement (row 2) ----------------------------------

APPEND_PG = """
WITH s AS (
    UPDATE sessions
    SET last_seq = last_seq + 1, message_count = message_count + 1, version = version + 1,
        updated_at = %(now)s, expires_at = %(expires_at)s
    WHERE id = %(sid)s AND owner = '' AND (expires_at IS NULL OR expires_at > %(now)s)
    RETURNING last_seq
)
INSERT INTO messages (session_id, seq, role, content, name, tool_call_id, created_at)
SELECT %(sid)s, s.last_seq, %(role)s, %(content)s, %(name)s, %(tool_call_id)s, %(now)s FROM s
"""

APPEND_SQLITE_UPDATE = (
    "UPDATE sessions SET last_seq = last_seq + 1, message_count = message_count + 1,"
    " version = version + 1, updated_at = ?, expires_at = ?"
    " WHERE id = ? AND owner = '' AND (expires_at IS NULL OR expires_at > ?) RETURNING last_seq"
)


class HandAppend:
    """Append one message with the position assigned by the database.

    PostgreSQL: a single statement (a data-modifying CTE) on an autocommit connection:
    one round trip. SQLite (no DML in CTEs): UPDATE ... RETURNING then INSERT in one
    BEGIN IMMEDIATE transaction.
    """

    def __init__(self, raw: Raw, ttl: timedelta) -> None:
        self.raw, self.ttl = raw, ttl
        self.conn = raw.connect(autocommit=True)

    def append(self, sid: str, message: Message) -> None:
        raw = self.raw
        now = utcnow()
        if raw.pg:
            cur = self.conn.execute(
                APPEND_PG,
                {
                    "sid": sid,
                    "now": now,
                    "expires_at": now + self.ttl,
                    "role": message.role.value,
                    "content": message.content,
                    "name": message.name,
                    "tool_call_id": message.tool_call_id,
                },
            )
            if cur.rowcount != 1:
                raise RuntimeError(f"baseline append: no live session {sid}")
            return
        ts_now = raw.ts(now)
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        row = conn.execute(
            APPEND_SQLITE_UPDATE, (ts_now, raw.ts(now + self.ttl), sid, ts_now)
        ).fetchone()
        if row is None:
            conn.execute("ROLLBACK")
            raise RuntimeError(f"baseline append: no live session {sid}")
        conn.execute(INSERT_MESSAGE, message_params(sid, row[0], message, ts_now))
        conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


# --- load: a whole session into the same models (row 3) -----------------------------------


class HandLoad:
    """Fetch session row, messages, tool calls and metadata in one read transaction, and
    build the models the way the library does (`model_construct`: rows from the database
    are trusted, not re-validated)."""

    def __init__(self, raw: Raw) -> None:
        self.raw = raw
        self.conn = raw.connect()
        sql = raw.sql
        self._session = sql(
            "SELECT agent_id, created_at, updated_at FROM sessions"
            " WHERE id = ? AND owner = '' AND (expires_at IS NULL OR expires_at > ?)"
        )
        self._messages = sql(
            f"SELECT {MESSAGE_READ_COLUMNS} FROM messages"
            " WHERE session_id = ? AND owner = '' ORDER BY seq"
        )
        self._go_messages = sql(
            f"SELECT {GO_MESSAGE_COLUMNS} FROM messages"
            " WHERE session_id = ? AND owner = '' ORDER BY seq"
        )
        self._calls = sql(
            "SELECT message_seq, call_id, type, function_name, arguments FROM tool_calls"
            " WHERE session_id = ? AND owner = '' ORDER BY message_seq, idx"
        )
        self._metadata = sql(
            "SELECT key, value FROM session_metadata WHERE session_id = ? AND owner = ''"
        )

    def load(self, sid: str) -> Session:
        raw, conn = self.raw, self.conn
        raw.begin_read(conn)
        head = conn.execute(self._session, (sid, raw.ts(utcnow()))).fetchone()
        if head is None:
            conn.commit()
            raise KeyError(sid)
        message_rows = conn.execute(self._messages, (sid,)).fetchall()
        call_rows = conn.execute(self._calls, (sid,)).fetchall()
        metadata_rows = conn.execute(self._metadata, (sid,)).fetchall()
        conn.commit()
        calls: dict[int, list[ToolCall]] = {}
        for seq, call_id, type_, fname, arguments in call_rows:
            calls.setdefault(seq, []).append(
                ToolCall.model_construct(
                    id=call_id,
                    type=type_,
                    function=ToolFunction.model_construct(name=fname, arguments=arguments),
                )
            )
        messages = []
        for row in message_rows:
            fields = message_fields(row, raw.pg)
            fields["role"] = Role(fields["role"])
            found = calls.get(row[0])
            messages.append(
                Message.model_construct(tool_calls=tuple(found) if found else None, **fields)
            )
        metadata = {key: (value if raw.pg else json.loads(value)) for key, value in metadata_rows}
        return Session.model_construct(
            id=sid,
            agent_id=head[0],
            messages=messages,
            created_at=raw.ts_in(head[1]),
            updated_at=raw.ts_in(head[2]),
            metadata=metadata,
        )

    def _read(self, sid: str, messages_statement: str) -> tuple[Any, list[Any], Any, list[Any]]:
        """(session head, message rows, calls as dicts by message seq, metadata rows), read in
        one read transaction."""
        raw, conn = self.raw, self.conn
        raw.begin_read(conn)
        head = conn.execute(self._session, (sid, raw.ts(utcnow()))).fetchone()
        message_rows = conn.execute(messages_statement, (sid,)).fetchall()
        call_rows = conn.execute(self._calls, (sid,)).fetchall()
        metadata_rows = conn.execute(self._metadata, (sid,)).fetchall()
        conn.commit()
        calls: dict[int, list[dict[str, Any]]] = {}
        for seq, call_id, type_, fname, arguments in call_rows:
            calls.setdefault(seq, []).append(
                {"id": call_id, "type": type_, "function": {"name": fname, "arguments": arguments}}
            )
        return head, message_rows, calls, metadata_rows

    def load_dicts(self, sid: str) -> dict[str, Any]:
        """The same rows in one read transaction, into plain dicts: the floor of a load."""
        head, message_rows, calls, metadata_rows = self._read(sid, self._messages)
        loads = (lambda item: item) if self.raw.pg else json.loads  # SQLite keeps items as text
        messages = [
            {
                "role": role,
                "content": content,
                "name": name,
                "tool_call_id": tool_call_id,
                "tool_calls": calls.get(seq),
                "kind": kind,
                "item_format": item_format,
                "item": None if item is None else loads(item),
                "model": model,
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cached_tokens": cached_tokens,
                "reasoning_tokens": reasoning_tokens,
            }
            for (
                seq, role, content, name, tool_call_id, kind, item_format, item,
                model, input_tokens, output_tokens, cached_tokens, reasoning_tokens,
            ) in message_rows
        ]  # fmt: skip
        return {"agent_id": head[0], "messages": messages, "metadata": dict(metadata_rows)}

    def load_go_dicts(self, sid: str) -> dict[str, Any]:
        """`load_dicts` reading only the Go package's message fields (context: what the
        load cost before messages carried framework items and usage)."""
        head, message_rows, calls, metadata_rows = self._read(sid, self._go_messages)
        messages = [
            {
                "role": role,
                "content": content,
                "name": name,
                "tool_call_id": tool_call_id,
                "tool_calls": calls.get(seq),
            }
            for seq, role, content, name, tool_call_id in message_rows
        ]
        return {"agent_id": head[0], "messages": messages, "metadata": dict(metadata_rows)}

    def close(self) -> None:
        self.conn.close()


class HandHistory:
    """The last `limit` messages with their tool calls, into plain dicts: the live-session
    check, the newest rows and their calls, in one read transaction."""

    def __init__(self, raw: Raw) -> None:
        self.raw = raw
        self.conn = raw.connect()
        sql = raw.sql
        self._head = sql(
            "SELECT last_seq FROM sessions"
            " WHERE id = ? AND owner = '' AND (expires_at IS NULL OR expires_at > ?)"
        )
        self._last = sql(
            f"SELECT {MESSAGE_READ_COLUMNS} FROM messages"
            " WHERE session_id = ? AND owner = '' ORDER BY seq DESC LIMIT ?"
        )
        self._calls = sql(
            "SELECT message_seq, call_id, type, function_name, arguments FROM tool_calls"
            " WHERE session_id = ? AND owner = '' AND message_seq >= ? ORDER BY message_seq, idx"
        )

    def history(self, sid: str, limit: int) -> list[dict[str, Any]]:
        raw, conn = self.raw, self.conn
        raw.begin_read(conn)
        conn.execute(self._head, (sid, raw.ts(utcnow()))).fetchone()
        rows = conn.execute(self._last, (sid, limit)).fetchall()[::-1]
        call_rows = conn.execute(self._calls, (sid, rows[0][0])).fetchall() if rows else []
        conn.commit()
        calls: dict[int, list[tuple[Any, ...]]] = {}
        for seq, *call in call_rows:
            calls.setdefault(seq, []).append(tuple(call))
        loads = (lambda item: item) if raw.pg else json.loads  # SQLite keeps items as text
        return [
            {"seq": seq, "role": role, "content": content, "name": name,
             "tool_call_id": tool_call_id, "tool_calls": calls.get(seq), "kind": kind,
             "item_format": item_format, "item": None if item is None else loads(item),
             "model": model, "input_tokens": input_tokens, "output_tokens": output_tokens,
             "cached_tokens": cached_tokens, "reasoning_tokens": reasoning_tokens}
            for (
                seq, role, content, name, tool_call_id, kind, item_format, item,
                model, input_tokens, output_tokens, cached_tokens, reasoning_tokens,
            ) in rows
        ]  # fmt: skip

    def close(self) -> None:
        self.conn.close()


# --- small reads: the cache check and a listing page (rows 4 and 5) -----------------------


class HandReads:
    """One primary-key lookup of a session's version (autocommit: one round trip), and the
    first page of live session summaries in the library's order (newest update first;
    served by the (owner, updated_at, id) index of migration 0007), in the default owner ''
    as an unscoped store reads them."""

    def __init__(self, raw: Raw) -> None:
        self.raw = raw
        self.conn = raw.connect(autocommit=True)
        self._head = raw.sql(
            "SELECT version, expires_at FROM sessions"
            " WHERE id = ? AND owner = '' AND (expires_at IS NULL OR expires_at > ?)"
        )
        self._page = raw.sql(
            "SELECT id, agent_id, message_count, created_at, updated_at, expires_at"
            " FROM sessions WHERE owner = '' AND (expires_at IS NULL OR expires_at > ?)"
            " ORDER BY updated_at DESC, id DESC LIMIT ?"
        )
        self._agent_page = raw.sql(
            "SELECT id, agent_id, message_count, created_at, updated_at, expires_at"
            " FROM sessions WHERE owner = '' AND agent_id = ?"
            " AND (expires_at IS NULL OR expires_at > ?)"
            " ORDER BY updated_at DESC, id DESC LIMIT ?"
        )

    def page(self, limit: int = 100, agent_id: str | None = None) -> list[Any]:
        now = self.raw.ts(utcnow())
        if agent_id is None:
            return self.conn.execute(self._page, (now, limit + 1)).fetchall()
        return self.conn.execute(self._agent_page, (agent_id, now, limit + 1)).fetchall()

    def head(self, sid: str) -> Any:
        return self.conn.execute(self._head, (sid, self.raw.ts(utcnow()))).fetchone()

    def close(self) -> None:
        self.conn.close()


# --- the reaper (row 6) -------------------------------------------------------------------

REAP_PG = """
DELETE FROM sessions WHERE id IN (
    SELECT id FROM sessions WHERE expires_at <= %s
    ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED
)
"""
REAP_SQLITE = (
    "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions"
    " WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at LIMIT ?)"
)


def hand_reap(raw: Raw, batch_size: int = 1000) -> int:
    """Delete expired sessions batch by batch (one transaction each; messages, tool calls
    and metadata go by ON DELETE CASCADE). Returns how many sessions were deleted."""
    conn = raw.connect()
    deleted = 0
    try:
        while True:
            now = raw.ts(utcnow())
            raw.begin_write(conn)
            cur = conn.execute(REAP_PG if raw.pg else REAP_SQLITE, (now, batch_size))
            count = cur.rowcount
            conn.commit()
            deleted += count
            if count < batch_size:
                return deleted
    finally:
        conn.close()


# --- the original design: one JSON blob per session (row 7) -------------------------------


class BlobStore:
    """The Go package's design on SQL: `blob_sessions(id, data, expires_at)`; every save
    serializes the whole session (`Session.to_json()`) and UPSERTs it in one statement.

    `data` is TEXT on both dialects (the Go store writes opaque bytes to a key-value
    backend; TEXT is also cheaper to write than JSONB, so this is the blob design at its
    fastest).
    """

    CREATE = (
        "CREATE TABLE IF NOT EXISTS blob_sessions ("
        " id TEXT PRIMARY KEY, data TEXT NOT NULL, expires_at {ts})"
    )
    UPSERT = (
        "INSERT INTO blob_sessions (id, data, expires_at) VALUES (?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at"
    )

    def __init__(self, raw: Raw, ttl: timedelta) -> None:
        self.raw, self.ttl = raw, ttl
        self.conn = raw.connect(autocommit=True)
        ts_type = "TIMESTAMPTZ" if raw.pg else "TIMESTAMP"
        self.conn.execute(self.CREATE.format(ts=ts_type))
        self._upsert = raw.sql(self.UPSERT)

    def save(self, session: Session) -> None:
        data = session.to_json()
        expires_at = self.raw.ts(utcnow() + self.ttl)
        self.conn.execute(self._upsert, (session.id, data, expires_at))

    def load(self, sid: str) -> Session:
        row = self.conn.execute(
            self.raw.sql("SELECT data FROM blob_sessions WHERE id = ?"), (sid,)
        ).fetchone()
        return Session.from_json(row[0])

    def close(self) -> None:
        self.conn.close()
