"""Framework adapters against each framework's own SQL backend, on the same database.

- OpenAI Agents SDK: `SqlSessionsSession` vs `agents.extensions.memory.SQLAlchemySession`
  (its tables created in the same database), both dialects.
- LangChain: `SqlSessionsChatMessageHistory` vs langchain-postgres'
  `PostgresChatMessageHistory` (PostgreSQL only: that backend exists only there).

Rows: append one turn (one `add_items` / `aadd_messages` call of four items: user, tool
call, tool result, answer), the last 50 items (OpenAI; LangChain histories have no limit),
and all of 1,000 items. Everything is async (both frameworks drive sessions with await);
the timed part is the awaited call only. Target: faster than the framework's own backend.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from bench.harness import Row, interleaved, ratio
from bench.scenarios import Context, verify
from sqlsessions.config import normalize_url

TARGET = "< 1x framework backend"
LOAD_SIZE = 1_000


def run_frameworks(ctx: Context) -> list[Row]:
    loop = asyncio.new_event_loop()
    try:
        rows = _openai_agents_rows(ctx, loop)
        if ctx.dialect == "postgresql":
            rows += _langchain_rows(ctx, loop)
        return rows
    finally:
        loop.close()


def _timer(
    loop: asyncio.AbstractEventLoop, make: Callable[[int], Awaitable[Any]]
) -> Callable[[int], int]:
    """A contender for `interleaved`: nanoseconds of one awaited call."""

    async def once(i: int) -> int:
        call = make(i)
        start = time.perf_counter_ns()
        await call
        return time.perf_counter_ns() - start

    return lambda i: loop.run_until_complete(once(i))


def _rows(
    ctx: Context,
    framework: str,
    baseline_name: str,
    contenders: dict[str, dict[str, Callable[[int], int]]],
) -> list[Row]:
    settings = ctx.settings
    rows = []
    for operation, pair in contenders.items():
        heavy = str(LOAD_SIZE) in operation
        # At least 40 samples a row even in a --quick run (a few seconds in all): with 8, one
        # neighbour's burst on the shared machine swung a ratio from 0.6x to 1.0x.
        repeats = max(40, settings.repeats // (5 if heavy else 2))
        stats = interleaved(pair, max(2, settings.warmup // 2), repeats)
        ours, base = stats["ours"].median, stats["framework"].median
        r = ratio(ours, base)
        rows.append(
            Row(
                "frameworks",
                f"{framework}: {operation}",
                ctx.dialect,
                ours,
                base,
                baseline_name,
                r,
                TARGET,
                r is not None and r < 1,
                details={"stats": {k: vars(v) for k, v in stats.items()}},
            )
        )
    return rows


def _async_url(ctx: Context) -> str:
    return normalize_url(ctx.url, asynchronous=True).render_as_string(hide_password=False)


# --- OpenAI Agents SDK ---------------------------------------------------------------------------


def _responses_turn(i: int) -> list[Any]:
    return [
        {"role": "user", "content": f"question {i}"},
        {
            "type": "function_call",
            "id": f"fc_{i}",
            "call_id": f"call_{i}",
            "name": "lookup",
            "arguments": json.dumps({"q": i}),
        },
        {"type": "function_call_output", "call_id": f"call_{i}", "output": f"result {i}"},
        {
            "type": "message",
            "id": f"msg_{i}",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": f"answer {i}", "annotations": []}],
        },
    ]


def _openai_agents_rows(ctx: Context, loop: asyncio.AbstractEventLoop) -> list[Row]:
    from agents.extensions.memory import SQLAlchemySession
    from sqlalchemy.ext.asyncio import create_async_engine

    from sqlsessions.integrations.openai_agents import SqlSessionsSession

    engine = create_async_engine(_async_url(ctx))
    ours = {name: SqlSessionsSession.from_engine(f"oa-{name}", engine) for name in ("w", "r")}
    theirs = {
        name: SQLAlchemySession(f"oa-{name}", engine=engine, create_tables=True)
        for name in ("w", "r")
    }
    try:

        async def seed() -> None:
            for session in (ours["r"], theirs["r"]):
                for start in range(0, LOAD_SIZE, 100):
                    await session.add_items(
                        [{"role": "user", "content": f"m{j}"} for j in range(start, start + 100)]
                    )

        loop.run_until_complete(seed())
        contenders = {
            "append one turn (4 items)": {
                "ours": _timer(loop, lambda i: ours["w"].add_items(_responses_turn(i))),
                "framework": _timer(loop, lambda i: theirs["w"].add_items(_responses_turn(i))),
            },
            "last 50 items": {
                "ours": _timer(loop, lambda i: ours["r"].get_items(50)),
                "framework": _timer(loop, lambda i: theirs["r"].get_items(50)),
            },
            f"all {LOAD_SIZE:,} items": {
                "ours": _timer(loop, lambda i: ours["r"].get_items()),
                "framework": _timer(loop, lambda i: theirs["r"].get_items()),
            },
        }
        rows = _rows(ctx, "OpenAI Agents", "agents SQLAlchemySession, same database", contenders)

        async def check() -> None:
            mine, other = await ours["r"].get_items(), await theirs["r"].get_items()
            verify(mine == other and len(mine) == LOAD_SIZE, "both backends hold the same items")

        loop.run_until_complete(check())
        return rows
    finally:
        loop.run_until_complete(engine.dispose())


# --- LangChain -----------------------------------------------------------------------------------


def _langchain_turn(i: int) -> list[Any]:
    from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

    return [
        HumanMessage(content=f"question {i}"),
        AIMessage(
            content="",
            tool_calls=[{"name": "lookup", "args": {"q": i}, "id": f"call_{i}"}],
            usage_metadata={"input_tokens": 10, "output_tokens": 2, "total_tokens": 12},
        ),
        ToolMessage(content=f"result {i}", tool_call_id=f"call_{i}"),
        AIMessage(content=f"answer {i}"),
    ]


def _langchain_rows(ctx: Context, loop: asyncio.AbstractEventLoop) -> list[Row]:
    import psycopg
    from langchain_core.messages import HumanMessage
    from langchain_postgres import PostgresChatMessageHistory

    from sqlsessions import AsyncStore, StoreConfig
    from sqlsessions.integrations.langchain import SqlSessionsChatMessageHistory

    table = "langchain_chat_history"
    libpq_url = normalize_url(ctx.url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(libpq_url) as sync_conn:
        PostgresChatMessageHistory.create_tables(sync_conn, table)
    # As langchain-postgres documents it: a plain connection (its writes then commit).
    conn = loop.run_until_complete(psycopg.AsyncConnection.connect(libpq_url))
    store = AsyncStore(StoreConfig(url=ctx.url))
    ids = {name: str(uuid.uuid4()) for name in ("w", "r")}
    ours = {n: SqlSessionsChatMessageHistory(i, async_store=store) for n, i in ids.items()}
    theirs = {
        n: PostgresChatMessageHistory(table, i, async_connection=conn) for n, i in ids.items()
    }
    try:

        async def seed() -> None:
            for history in (ours["r"], theirs["r"]):
                for start in range(0, LOAD_SIZE, 100):
                    await history.aadd_messages(
                        [HumanMessage(content=f"m{j}") for j in range(start, start + 100)]
                    )

        loop.run_until_complete(seed())
        contenders = {
            "append one turn (4 messages)": {
                "ours": _timer(loop, lambda i: ours["w"].aadd_messages(_langchain_turn(i))),
                "framework": _timer(loop, lambda i: theirs["w"].aadd_messages(_langchain_turn(i))),
            },
            f"all {LOAD_SIZE:,} messages": {
                "ours": _timer(loop, lambda i: ours["r"].aget_messages()),
                "framework": _timer(loop, lambda i: theirs["r"].aget_messages()),
            },
        }
        rows = _rows(ctx, "LangChain", "langchain-postgres PostgresChatMessageHistory", contenders)

        async def check() -> None:
            mine, other = await ours["r"].aget_messages(), await theirs["r"].aget_messages()
            verify(
                [m.content for m in mine] == [m.content for m in other] and len(mine) == LOAD_SIZE,
                "both backends hold the same messages",
            )

        loop.run_until_complete(check())
        return rows
    finally:
        loop.run_until_complete(store.close())
        loop.run_until_complete(conn.close())
