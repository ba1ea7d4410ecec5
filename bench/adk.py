"""Google ADK rows: `SqlSessionService` against ADK's own `DatabaseSessionService`, same run.

Three rows per dialect, each ours next to ADK's backend on the same server (ADK's tables live
in a database of their own, since both schemas have a table named ``sessions``):

* append one event (``append_event`` of a model reply) to a session through the object
  ``get_session`` returned, as ADK's Runner does;
* the last 50 events of a 1,000-event session (``GetSessionConfig(num_recent_events=50)``);
* all 1,000 events (``get_session()``).

Ours is measured warm (the store's cache, kept coherent by one primary-key check per read)
and, for the two reads, also cold (cache emptied before every call: every row is read and
decoded). ADK's service has no cache. pydantic-ai has no SQL backend of its own, so it has no
row here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from google.adk.events.event import Event
from google.adk.sessions import BaseSessionService, DatabaseSessionService
from google.adk.sessions.base_session_service import GetSessionConfig
from google.genai import types
from sqlalchemy.engine import make_url

from bench.harness import Row, Stats, interleaved, ratio
from bench.scenarios import Context, verify
from sqlsessions.integrations.adk import SqlSessionService

APP, USER = "bench-app", "bench-user"
EVENTS = 1_000
RECENT = 50


def async_url(url: str) -> str:
    """The asyncio-driver form of `url` that ADK's DatabaseSessionService requires."""
    parsed = make_url(url)
    driver = "sqlite+aiosqlite" if parsed.get_backend_name() == "sqlite" else "postgresql+psycopg"
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def turn_events(i: int) -> list[Event]:
    """One tool-using turn: user text, model function call, tool result, model answer."""
    call_id = f"call-{i}"
    city = f"City{i}"
    contents = [
        ("user", types.Part(text=f"Weather in {city}?")),
        (
            "forecaster",
            types.Part(function_call=types.FunctionCall(id=call_id, name="w", args={"c": city})),
        ),
        (
            "forecaster",
            types.Part(
                function_response=types.FunctionResponse(
                    id=call_id, name="w", response={"sky": "sunny"}
                )
            ),
        ),
        ("forecaster", types.Part(text=f"It is sunny in {city}.")),
    ]
    return [
        Event(
            author=author,
            invocation_id=f"inv-{i}",
            content=types.Content(
                role="user" if author == "user" or part.function_response else "model",
                parts=[part],
            ),
        )
        for author, part in contents
    ]


async def _seed(services: list[BaseSessionService], session_id: str, events: int) -> None:
    """The same events (ids, timestamps) into every service."""
    sessions = [
        await service.create_session(app_name=APP, user_id=USER, session_id=session_id)
        for service in services
    ]
    for i in range(events // 4):
        for event in turn_events(i):
            for service, session in zip(services, sessions, strict=True):
                await service.append_event(session, event.model_copy(deep=True))


def run_adk(ctx: Context) -> list[Row]:
    """The three ADK rows on this context's dialect."""
    loop = asyncio.new_event_loop()
    with ctx.new_database("adk_own") as adk_url:
        ours = SqlSessionService.from_url(ctx.url)
        theirs = DatabaseSessionService(db_url=async_url(adk_url))
        try:
            ctx.say(f"adk: seeding {EVENTS} events into both backends")
            started = time.perf_counter()
            loop.run_until_complete(_seed([ours, theirs], "long", EVENTS))
            ctx.say(f"adk: seeded in {time.perf_counter() - started:.1f} s")
            return _rows(ctx, loop, ours, theirs)
        finally:
            loop.run_until_complete(ours.close())
            loop.run_until_complete(theirs.close())
            loop.close()


def _timer(
    loop: asyncio.AbstractEventLoop,
    make: Callable[[], Awaitable[Any]],
    before: Callable[[], Awaitable[None]] | None = None,
) -> Callable[[int], int]:
    """A contender for `interleaved`: nanoseconds of one awaited call (`before` untimed)."""

    async def once() -> int:
        if before is not None:
            await before()
        call = make()
        start = time.perf_counter_ns()
        await call
        return time.perf_counter_ns() - start

    return lambda _: loop.run_until_complete(once())


def _rows(
    ctx: Context,
    loop: asyncio.AbstractEventLoop,
    ours: SqlSessionService,
    theirs: DatabaseSessionService,
) -> list[Row]:
    warmup, repeats = ctx.settings.warmup, max(10, ctx.settings.repeats // 3)
    reply = turn_events(10_000)[3]

    def held(service: BaseSessionService) -> Any:
        async def create_and_get() -> Any:
            await service.create_session(app_name=APP, user_id=USER, session_id="append")
            return await service.get_session(app_name=APP, user_id=USER, session_id="append")

        return loop.run_until_complete(create_and_get())

    def append_to(service: BaseSessionService) -> Callable[[], Awaitable[Any]]:
        session = held(service)
        return lambda: service.append_event(
            session, reply.model_copy(update={"id": Event.new_id()})
        )

    def read_from(
        service: BaseSessionService, config: GetSessionConfig | None
    ) -> Callable[[], Awaitable[Any]]:
        return lambda: service.get_session(
            app_name=APP, user_id=USER, session_id="long", config=config
        )

    ctx.say("adk: append one event")
    append = interleaved(
        {"ours": _timer(loop, append_to(ours)), "adk": _timer(loop, append_to(theirs))},
        warmup,
        repeats,
    )
    rows = [_row(ctx, "append one event", append["ours"], append["adk"], "warm")]
    for label, config in (
        (f"last {RECENT} of {EVENTS} events", GetSessionConfig(num_recent_events=RECENT)),
        (f"all {EVENTS} events", None),
    ):
        ctx.say(f"adk: {label}")
        mine, adk = read_from(ours, config), read_from(theirs, config)
        a, b = loop.run_until_complete(mine()), loop.run_until_complete(adk())
        verify(
            a is not None
            and b is not None
            and [e.model_dump(mode="json") for e in a.events]
            == [e.model_dump(mode="json") for e in b.events],
            f"{label}: both services return the same events",
        )
        stats = interleaved(
            {
                "warm": _timer(loop, mine),
                "cold": _timer(loop, mine, ours.clear_cache),
                "adk": _timer(loop, adk),
            },
            warmup,
            repeats,
        )
        rows.append(_row(ctx, label, stats["warm"], stats["adk"], "warm"))
        rows.append(_row(ctx, label, stats["cold"], stats["adk"], "cold"))
    return rows


def _row(ctx: Context, label: str, ours: Stats, adk: Stats, cache: str) -> Row:
    r = ratio(ours.median, adk.median)
    return Row(
        "adk",
        f"ADK {label} ({cache} cache)",
        ctx.dialect,
        ours.median,
        adk.median,
        "ADK DatabaseSessionService",
        r,
        "< 1.0 x ADK's backend",
        None if r is None else r < 1.0,
        details={"ours": vars(ours), "baseline": vars(adk)},
    )
