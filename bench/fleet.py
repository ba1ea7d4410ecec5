"""A fleet of agents (SPEC §7): K agents at once, each turn reading its last 50 messages and
writing a user message, an assistant message with a tool call and the tool result.

Contenders, on the same PostgreSQL database, each with K connections:
- `AsyncStore`, `history(50)` + one `append` of the three messages;
- `AsyncStore`, `get` + `save` (the Go API's way);
- `Store` in K threads, `history(50)` + `append`;
- hand-written psycopg async: the same reads (last 50 messages, their tool calls) and the
  minimal write (version bump of the session row, the three messages and the tool call in
  one transaction), one connection per agent, with no server-side prepared statements, as
  the stores' default and every other baseline (`Raw.connect`; `bench/prepared.py` measures
  what preparing changes).
The figure is turns per second over all agents (higher is better); each contender runs its
turns in a block, blocks interleaved in rounds, and the median of the rounds is reported.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from bench.baselines import MESSAGE_READ_COLUMNS, Raw, utcnow
from bench.harness import Row, ratio
from bench.scenarios import Context, verify
from bench.seed import analyze, new_session
from sqlsessions import AsyncStore, Message, Role, Store, ToolCall, ToolFunction

TTL = timedelta(days=7)
FLEET_SIZES = (1, 8, 32)
HISTORY = 50
TARGET = 0.6


def turn_messages(agent: int, turn: int) -> tuple[Message, Message, Message]:
    """The three messages one turn writes."""
    call_id = f"call_{agent}_{turn}"
    call = ToolCall(
        id=call_id,
        function=ToolFunction(name="search", arguments=json.dumps({"q": f"turn {turn}"})),
    )
    return (
        Message(role=Role.USER, content=f"question {turn} from agent {agent}"),
        Message(role=Role.ASSISTANT, content="", tool_calls=(call,)),
        Message(role=Role.TOOL, content=f"result of turn {turn}", tool_call_id=call_id),
    )


class HandFleet:
    """Hand-written psycopg async: one connection per agent, the same work per turn."""

    LAST = (
        f"SELECT {MESSAGE_READ_COLUMNS} FROM messages"
        " WHERE session_id = %s AND owner = '' ORDER BY seq DESC LIMIT %s"
    )
    CALLS = (
        "SELECT message_seq, call_id, type, function_name, arguments FROM tool_calls"
        " WHERE session_id = %s AND owner = '' AND message_seq >= %s ORDER BY message_seq, idx"
    )
    BUMP = (
        "UPDATE sessions SET last_seq = last_seq + 3, message_count = message_count + 3,"
        " version = version + 1, updated_at = %s, expires_at = %s"
        " WHERE id = %s AND owner = '' RETURNING last_seq"
    )
    INSERT_MESSAGE = (
        "INSERT INTO messages (session_id, seq, role, content, name, tool_call_id, created_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)"
    )
    INSERT_CALL = (
        "INSERT INTO tool_calls (session_id, message_seq, idx, call_id, type, function_name,"
        " arguments) VALUES (%s, %s, 0, %s, %s, %s, %s)"
    )

    def __init__(self, raw: Raw) -> None:
        self.raw = raw
        self.connections: list[Any] = []

    async def open(self, k: int) -> None:
        import psycopg

        url = self.raw.url
        query = dict(url.query)
        while len(self.connections) < k:
            self.connections.append(
                await psycopg.AsyncConnection.connect(
                    dbname=url.database,
                    user=url.username,
                    password=url.password or None,
                    host=query.get("host") or url.host,
                    port=url.port,
                    autocommit=True,
                    # As the stores (StoreConfig.prepare_threshold=None) and Raw.connect: with
                    # psycopg's default (5) only this side would skip the server's planning.
                    prepare_threshold=None,
                )
            )

    async def close(self) -> None:
        for conn in self.connections:
            await conn.close()
        self.connections.clear()

    async def turn(self, agent: int, sid: str, turn: int) -> None:
        conn = self.connections[agent]
        rows = await (await conn.execute(self.LAST, (sid, HISTORY))).fetchall()
        if rows:
            await (await conn.execute(self.CALLS, (sid, rows[-1][0]))).fetchall()
        user, assistant, tool = turn_messages(agent, turn)
        now = utcnow()
        async with conn.transaction():
            cursor = await conn.execute(self.BUMP, (now, now + TTL, sid))
            last = (await cursor.fetchone())[0]
            first = last - 2
            params = [
                (sid, first + i, m.role.value, m.content, m.name, m.tool_call_id, now)
                for i, m in enumerate((user, assistant, tool))
            ]
            async with conn.cursor() as cur:
                await cur.executemany(self.INSERT_MESSAGE, params)
            call = assistant.tool_calls[0]  # type: ignore[index]
            await conn.execute(
                self.INSERT_CALL,
                (sid, first + 1, call.id, call.type, call.function.name, call.function.arguments),
            )


def _session_ids(prefix: str, k: int) -> list[str]:
    return [f"{prefix}-{agent}" for agent in range(k)]


async def _run_agents(k: int, turns: int, one_turn: Callable[[int, int], Awaitable[None]]) -> int:
    """K agents, `turns` turns each, all at once; returns the elapsed nanoseconds."""

    async def agent(index: int) -> None:
        for turn in range(turns):
            await one_turn(index, turn)

    start = time.perf_counter_ns()
    await asyncio.gather(*(agent(index) for index in range(k)))
    return time.perf_counter_ns() - start


def _run_threads(k: int, turns: int, one_turn: Callable[[int, int], None]) -> int:
    barrier = threading.Barrier(k + 1)
    errors: list[BaseException] = []

    def agent(index: int) -> None:
        barrier.wait()
        try:
            for turn in range(turns):
                one_turn(index, turn)
        except BaseException as exc:  # reported after the run
            errors.append(exc)

    threads = [threading.Thread(target=agent, args=(index,)) for index in range(k)]
    for thread in threads:
        thread.start()
    start = time.perf_counter_ns()
    barrier.wait()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter_ns() - start


def run_fleet(ctx: Context) -> list[Row]:
    if ctx.dialect != "postgresql":
        return []  # SPEC §7 states this target for PostgreSQL
    rows: list[Row] = []
    for k in FLEET_SIZES:
        ctx.say(f"fleet: K = {k}")
        rows.extend(asyncio.run(_fleet_rows(ctx, k)))
    return rows


async def _fleet_rows(ctx: Context, k: int) -> list[Row]:
    quick = ctx.settings.quick
    turns = max(2, (10 if quick else 40) // max(1, k // 8))
    rounds = 2 if quick else 5
    options = {"engine_options": {"pool_size": k, "max_overflow": 0}}
    async_store = AsyncStore.from_url(ctx.url, ttl=TTL, **options)
    sync_store = Store.from_url(ctx.url, ttl=TTL, **options)
    hand = HandFleet(Raw(ctx.url))
    prefixes = {name: f"fleet{k}-{name}" for name in ("append", "save", "threads", "hand")}
    seeded = 60
    for prefix in prefixes.values():
        for sid in _session_ids(prefix, k):
            sync_store.save(new_session(sid, seeded, seed=k))
    analyze(Raw(ctx.url))  # planner statistics, as autovacuum keeps them in a running database
    await hand.open(k)
    counters = dict.fromkeys(prefixes, 0)

    async def history_append(agent: int, turn: int) -> None:
        sid = f"{prefixes['append']}-{agent}"
        await async_store.history(sid, HISTORY)
        await async_store.append(sid, *turn_messages(agent, turn))

    async def get_save(agent: int, turn: int) -> None:
        session = await async_store.get(f"{prefixes['save']}-{agent}")
        session.messages.extend(turn_messages(agent, turn))
        await async_store.save(session)

    def threads_turn(agent: int, turn: int) -> None:
        sid = f"{prefixes['threads']}-{agent}"
        sync_store.history(sid, HISTORY)
        sync_store.append(sid, *turn_messages(agent, turn))

    async def hand_turn(agent: int, turn: int) -> None:
        await hand.turn(agent, f"{prefixes['hand']}-{agent}", turn)

    contenders: dict[str, Callable[[], Awaitable[int]]] = {
        "append": lambda: _run_agents(k, turns, history_append),
        "save": lambda: _run_agents(k, turns, get_save),
        "threads": lambda: asyncio.to_thread(_run_threads, k, turns, threads_turn),
        "hand": lambda: _run_agents(k, turns, hand_turn),
    }
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    try:
        for name, run in contenders.items():  # warm-up: connections, caches, compiled SQL
            await run()
            counters[name] += k * turns
        for r in range(rounds):
            order = list(contenders)
            order = order[r % len(order) :] + order[: r % len(order)]
            for name in order:
                elapsed = await contenders[name]()
                counters[name] += k * turns
                rates[name].append(k * turns / (elapsed / 1e9))
        for name, prefix in prefixes.items():
            for sid in _session_ids(prefix, k):
                count = len((await async_store.get_if_exists(sid)).messages)
                verify(count == seeded + 3 * counters[name] // k, f"{name}: every turn landed")
    finally:
        await hand.close()
        await async_store.close()
        sync_store.close()
    base = statistics.median(rates["hand"])
    labels = {
        "append": "AsyncStore history+append",
        "save": "AsyncStore get+save",
        "threads": f"Store ({k} threads) history+append",
    }
    rows = []
    for name, label in labels.items():
        ours = statistics.median(rates[name])
        r = ratio(ours, base)
        rows.append(
            Row(
                "fleet",
                f"fleet turn, K={k}: {label}",
                ctx.dialect,
                ours,
                base,
                "hand-written psycopg async, same reads + minimal write",
                r,
                f"≥ {TARGET}x baseline" if k > 1 else "context",
                (r is not None and r >= TARGET) if k > 1 else None,
                unit="per_s",
                note=f"turns/s over {k} agents; median of {rounds} rounds of {k * turns} turns",
                details={"rates": rates[name], "baseline_rates": rates["hand"]},
            )
        )
    return rows
