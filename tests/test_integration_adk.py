"""Google ADK on sqlsessions through ADK's real Runner: lossless events, the projection the
Go API and the views read, and concurrent writers (both dialects)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google.adk.errors import StaleSessionError
from google.adk.events.event import Event
from google.genai import types

from adk_agent import APP, MODEL_VERSION, THOUGHT_SIGNATURE, make_runner, run_turn
from sqlsessions import Role, Store
from sqlsessions.analytics import read_view
from sqlsessions.integrations.adk import SqlSessionService

pytestmark = pytest.mark.frameworks

CITIES = ["Paris", "Oslo", "Lima"]


async def _converse(url: str, user: str = "alice") -> tuple[str, list[dict[str, Any]]]:
    async with SqlSessionService.from_url(url) as service:
        session = await service.create_session(
            app_name=APP, user_id=user, state={"app:units": "metric", "user:lang": "en", "n": 1}
        )
        runner = make_runner(service)
        written: list[dict[str, Any]] = []
        for city in CITIES:
            written += await run_turn(runner, user, session.id, f"Weather in {city}?")
        return session.id, written


def test_an_adk_agent_reads_back_identical_events_in_a_fresh_process(migrated_url: str) -> None:
    session_id, written = asyncio.run(_converse(migrated_url))
    assert len(written) == 4 * len(CITIES)  # user, call, tool result, answer per turn

    script = Path(__file__).with_name("adk_agent.py")
    out = subprocess.run(
        [sys.executable, str(script), migrated_url, APP, "alice", session_id],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    read_back = [json.loads(line) for line in out[:-1]]
    assert read_back == [json.loads(json.dumps(event, sort_keys=True)) for event in written]
    assert json.loads(out[-1])["state"] == {
        "app:units": "metric",
        "user:lang": "en",
        "n": 1,
        "last_answer": "It is cloudy.",
    }
    # The thought signature and usage metadata came back as ADK objects, bytes intact.
    events = [Event.model_validate(event) for event in read_back]
    thought = events[1].content.parts[0]  # type: ignore[union-attr,index]
    assert thought.thought and thought.thought_signature == THOUGHT_SIGNATURE
    assert events[3].usage_metadata is not None
    assert events[3].usage_metadata.total_token_count == 25


def test_the_go_api_and_the_views_see_the_adk_conversation(migrated_url: str) -> None:
    session_id, _ = asyncio.run(_converse(migrated_url))
    with Store.from_url(migrated_url) as store:
        # The ADK session is the user's (owner) session of the app (agent) with ADK's id.
        stored = store.scoped("alice").get_if_exists(session_id)
        assert (stored.owner, stored.agent_id, stored.id) == ("alice", APP, session_id)
        messages = [m for m in stored.messages if m.is_chat]
        assert [m.role for m in messages] == [
            Role.USER,
            Role.ASSISTANT,
            Role.TOOL,
            Role.ASSISTANT,
        ] * 3
        call_message, result, answer = messages[1], messages[2], messages[3]
        assert call_message.name == "forecaster"
        assert call_message.content == ""  # the thought is not part of the text
        assert call_message.tool_calls is not None
        call = call_message.tool_calls[0]
        assert call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"city": "Paris"}
        assert result.tool_call_id == call.id and result.name == "get_weather"
        assert json.loads(result.content) == {"city": "Paris", "sky": "sunny"}
        assert answer.content == "It is sunny."
        assert stored.agent_id == APP
        assert stored.metadata["adk.kind"] == "session"
        assert stored.metadata["state:last_answer"] == "It is cloudy."

        summary = read_view(store.engine, "session_summary", session_id=session_id).as_dicts()[0]
        assert (summary["user_messages"], summary["assistant_messages"]) == (3, 6)
        assert (summary["tool_messages"], summary["tool_call_count"]) == (3, 3)
        usage = read_view(store.engine, "tool_usage", agent_id=APP).as_dicts()
        assert [(row["function_name"], row["calls"]) for row in usage] == [("get_weather", 3)]


async def _append_with_retries(url: str, user: str, session_id: str, worker: int) -> int:
    """Append 10 events through a service of its own, reloading whenever its copy is stale."""
    conflicts = 0
    async with SqlSessionService.from_url(url) as service:
        for i in range(10):
            event = Event(
                author="user",
                invocation_id=f"w{worker}",
                content=types.Content(role="user", parts=[types.Part(text=f"w{worker}-{i}")]),
            )
            while True:
                session = await service.get_session(
                    app_name=APP, user_id=user, session_id=session_id
                )
                assert session is not None
                try:
                    await service.append_event(session, event)
                    break
                except StaleSessionError:
                    conflicts += 1
    return conflicts


def test_the_usage_adk_reports_shows_per_agent_and_model_in_usage_daily_with_its_cost(
    migrated_url: str,
) -> None:
    session_id, _ = asyncio.run(_converse(migrated_url))
    with Store.from_url(migrated_url) as store:
        store.set_model_prices({MODEL_VERSION: {"input": 1.0, "output": 4.0, "cached_input": 0.25}})
        messages = store.scoped("alice").get_if_exists(session_id).messages
        answer = next(m for m in messages if m.content.startswith("It is"))
        usage = read_view(store.engine, "usage_daily", agent_id=APP).as_dicts()
    assert (answer.model, answer.input_tokens, answer.output_tokens) == (MODEL_VERSION, 21, 7)
    assert (answer.cached_tokens, answer.reasoning_tokens) == (16, 3)
    # three answers, each counted once (the function-call events report no usage)
    assert [(row["agent_id"], row["model"], row["messages"]) for row in usage] == [
        (APP, MODEL_VERSION, 3)
    ]
    assert (usage[0]["input_tokens"], usage[0]["output_tokens"]) == (63, 21)
    assert (usage[0]["cached_tokens"], usage[0]["reasoning_tokens"]) == (48, 9)
    assert usage[0]["cost"] == pytest.approx((15 * 1.0 + 48 * 0.25 + 21 * 4.0) / 1_000_000)


def test_concurrent_appenders_to_one_adk_session_lose_and_duplicate_nothing(
    migrated_url: str,
) -> None:
    async def scenario() -> list[str]:
        async with SqlSessionService.from_url(migrated_url) as service:
            session = await service.create_session(app_name=APP, user_id="bob")
        await asyncio.gather(
            *(_append_with_retries(migrated_url, "bob", session.id, w) for w in range(4))
        )
        async with SqlSessionService.from_url(migrated_url) as service:
            found = await service.get_session(app_name=APP, user_id="bob", session_id=session.id)
            assert found is not None
            return [event.content.parts[0].text or "" for event in found.events]  # type: ignore[union-attr,index]

    texts = asyncio.run(scenario())
    expected = {f"w{w}-{i}" for w in range(4) for i in range(10)}
    assert sorted(texts) == sorted(expected)  # each exactly once
    for worker in range(4):  # each writer's events in its own order
        mine = [t for t in texts if t.startswith(f"w{worker}-")]
        assert mine == [f"w{worker}-{i}" for i in range(10)]


def test_two_processes_appending_to_one_adk_session_lose_and_duplicate_nothing(
    migrated_url: str,
) -> None:
    async def create() -> str:
        async with SqlSessionService.from_url(migrated_url) as service:
            return (await service.create_session(app_name=APP, user_id="carol")).id

    session_id = asyncio.run(create())
    code = (
        "import asyncio, sys; sys.path.insert(0, sys.argv[1]);"
        "from test_integration_adk import _append_with_retries as run;"
        "asyncio.run(run(sys.argv[2], 'carol', sys.argv[3], int(sys.argv[4])))"
    )
    tests_dir = str(Path(__file__).parent)
    workers = [
        subprocess.Popen([sys.executable, "-c", code, tests_dir, migrated_url, session_id, str(w)])
        for w in range(3)
    ]
    assert [worker.wait(timeout=300) for worker in workers] == [0, 0, 0]
    with Store.from_url(migrated_url) as store:
        texts = [m.content for m in store.scoped("carol").get_if_exists(session_id).messages]
    assert sorted(texts) == sorted(f"w{w}-{i}" for w in range(3) for i in range(10))


@pytest.mark.parametrize("num_recent_events", [None, 2])
def test_a_runner_turn_continues_a_session_read_with_a_recent_events_window(
    migrated_url: str, num_recent_events: int | None
) -> None:
    """ADK's Runner reads the session back for each turn; the stored history keeps growing."""
    session_id, _ = asyncio.run(_converse(migrated_url))

    async def more() -> int:
        async with SqlSessionService.from_url(migrated_url) as service:
            await run_turn(make_runner(service), "alice", session_id, "Weather in Rome?")
            from google.adk.sessions.base_session_service import GetSessionConfig

            found = await service.get_session(
                app_name=APP,
                user_id="alice",
                session_id=session_id,
                config=GetSessionConfig(num_recent_events=num_recent_events),
            )
            assert found is not None
            return len(found.events)

    assert asyncio.run(more()) == (num_recent_events or 16)


README = Path(__file__).resolve().parents[1] / "README.md"


def readme_section(title: str) -> str:
    return README.read_text(encoding="utf-8").split(f"\n### {title}\n", 1)[1].split("\n### ", 1)[0]


def test_the_readme_adk_example_runs(migrated_url: str, tmp_path: Path) -> None:
    code = readme_section("Google ADK").split("```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "example.py"
    script.write_text(code.replace("sqlite:///sessions.db", migrated_url))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "{'city': 'Oslo', 'user:units': 'metric'}"


def test_the_readme_adk_query_lists_the_apps_sessions(migrated_url: str) -> None:
    from sqlalchemy import text

    session_id, _ = asyncio.run(_converse(migrated_url, user="dora"))
    sql = readme_section("Google ADK").split("```sql\n", 1)[1].split("```", 1)[0]
    with Store.from_url(migrated_url) as store, store.engine.connect() as conn:
        rows = conn.execute(text(sql.replace("'weather'", f"'{APP}'"))).all()
    assert [tuple(r) for r in rows] == [("dora", session_id, 3, 3)]
