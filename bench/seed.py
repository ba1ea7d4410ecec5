"""Benchmark data: realistic conversations, and bulk loading of many sessions.

Conversations repeat a 4-message turn: a user question (~200 characters), an assistant
message calling a tool (one tool call every 4th message), the tool result (~400
characters) and the assistant's answer (~250 characters).

Small numbers of sessions go through the library (`store.save`), so they are exactly
what the library writes. Hundreds of thousands (listing, reaper) are bulk-loaded through
the raw driver (COPY on PostgreSQL, executemany on SQLite) into the migrated schema.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

from bench.baselines import Raw
from sqlsessions import Message, Role, Session, ToolCall, ToolFunction

_VOCABULARY = (
    "agent session tool search result answer context window token model query user "
    "database index latency schema message history summary weather invoice order "
    "refund shipping account password report chart metric deploy cluster"
)
_WORDS = _VOCABULARY.split()


def _text(rng: random.Random, length: int) -> str:
    words: list[str] = []
    size = 0
    while size < length:
        word = rng.choice(_WORDS)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)[:length]


def conversation(n: int, seed: int = 0) -> list[Message]:
    """`n` messages of the 4-message turn described in the module doc."""
    rng = random.Random(seed)
    messages: list[Message] = []
    for i in range(n):
        turn, step = divmod(i, 4)
        call_id = f"call_{seed}_{turn}"
        if step == 0:
            messages.append(Message(role=Role.USER, content=_text(rng, 200)))
        elif step == 1:
            arguments = json.dumps({"query": _text(rng, 40), "limit": 5})
            call = ToolCall(id=call_id, function=ToolFunction(name="search", arguments=arguments))
            messages.append(Message(role=Role.ASSISTANT, content="", tool_calls=(call,)))
        elif step == 2:
            messages.append(Message(role=Role.TOOL, content=_text(rng, 400), tool_call_id=call_id))
        else:
            messages.append(Message(role=Role.ASSISTANT, content=_text(rng, 250)))
    return messages


def new_session(session_id: str, n: int, seed: int = 0) -> Session:
    """A session holding `n` messages and two metadata keys."""
    session = Session.new(session_id, agent_id="bench-agent")
    session.messages = conversation(n, seed)
    session.metadata = {"channel": "slack", "user": {"id": 42, "plan": "pro"}}
    return session


def user_message(i: int) -> Message:
    """The message the save and append benchmarks add (~200 characters)."""
    return Message(role=Role.USER, content=f"question {i}: " + "x" * 186)


# --- bulk loading -------------------------------------------------------------------------

SESSION_COLUMNS = (
    "id",
    "agent_id",
    "created_at",
    "updated_at",
    "expires_at",
    "version",
    "rewrite_version",
    "last_seq",
    "message_count",
)
MESSAGE_COLUMNS = ("session_id", "seq", "role", "content", "name", "tool_call_id", "created_at")


def listing_rows(count: int, now: datetime) -> Iterator[tuple[Any, ...]]:
    """`count` session rows for the listing benchmark: 100 agents, activity spread over
    30 days, 0-60 messages each, 5% already expired."""
    rng = random.Random(7)
    for i in range(count):
        created = now - timedelta(days=30) + timedelta(seconds=rng.uniform(0, 29 * 86400))
        updated = created + timedelta(seconds=rng.uniform(0, 86400))
        expires = now - timedelta(hours=1) if rng.random() < 0.05 else updated + timedelta(days=7)
        messages = rng.randint(0, 60)
        yield (
            f"s{i:08d}",
            f"agent-{i % 100:02d}",
            created,
            updated,
            expires,
            1,
            1,
            messages,
            messages,
        )


def expired_rows(
    count: int, now: datetime, prefix: str, messages_each: int
) -> tuple[Iterator[tuple[Any, ...]], Iterator[tuple[Any, ...]]]:
    """Session rows that expired an hour ago, and `messages_each` message rows for each."""
    created = now - timedelta(days=8)
    expired = now - timedelta(hours=1)
    content = "expired conversation " + "y" * 80

    def sessions() -> Iterator[tuple[Any, ...]]:
        for i in range(count):
            yield (
                f"{prefix}{i:08d}",
                "bench-agent",
                created,
                created,
                expired - timedelta(microseconds=i),
                1,
                1,
                messages_each,
                messages_each,
            )

    def messages() -> Iterator[tuple[Any, ...]]:
        for i in range(count):
            sid = f"{prefix}{i:08d}"
            for seq in range(1, messages_each + 1):
                role = "user" if seq % 2 else "assistant"
                yield (sid, seq, role, content, None, None, created)

    return sessions(), messages()


def bulk_insert(
    raw: Raw, table: str, columns: tuple[str, ...], rows: Iterable[tuple[Any, ...]]
) -> int:
    """Load rows fast: COPY on PostgreSQL, one executemany transaction on SQLite."""
    conn = raw.connect()
    count = 0
    try:
        if raw.pg:
            with (
                conn.cursor() as cur,
                cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
                    count += 1
        else:
            marks = ", ".join("?" for _ in columns)
            ts = raw.ts

            def converted() -> Iterator[tuple[Any, ...]]:
                nonlocal count
                for row in rows:
                    count += 1
                    yield tuple(ts(v) if isinstance(v, datetime) else v for v in row)

            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", converted()
            )
        conn.commit()
    finally:
        conn.close()
    return count


def analyze(raw: Raw, vacuum: bool = True) -> None:
    """Fresh planner statistics (and, on PostgreSQL, a vacuumed visibility map) after a
    bulk load, as a database in steady state would have."""
    conn = raw.connect(autocommit=True)
    try:
        if raw.pg:
            conn.execute("VACUUM ANALYZE" if vacuum else "ANALYZE")
        else:
            conn.execute("ANALYZE")
    finally:
        conn.close()


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
