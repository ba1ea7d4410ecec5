"""pydantic-ai message history on sqlsessions, through `Store` and `AsyncStore` (both dialects):
a real agent run with an offline model and a tool, lossless read-back in a fresh process, the
projection the Go API and the views read, and concurrent runs on one conversation."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydantic_ai.messages import ModelMessage, ModelRequest, UserPromptPart
from typer.testing import CliRunner

from pydantic_ai_agent import PIXEL, aconverse, as_json, converse, make_agent
from sqlsessions import AsyncStore, InvalidInputError, Role, Store
from sqlsessions.analytics import read_view
from sqlsessions.cli import app
from sqlsessions.integrations.pydantic_ai import (
    aload_message_history,
    asave_new_messages,
    load_message_history,
    save_new_messages,
)

pytestmark = pytest.mark.frameworks

MODEL = "function:_model:"
"""The model name pydantic-ai's FunctionModel reports for the test agent."""

CITIES = ["Paris", "Oslo", "Lima"]


def run_conversation(url: str, facade: str, session_id: str) -> list[ModelMessage]:
    if facade == "sync":
        with Store.from_url(url) as store:
            return converse(store, session_id, CITIES)

    async def main() -> list[ModelMessage]:
        async with AsyncStore.from_url(url) as store:
            return await aconverse(store, session_id, CITIES)

    return asyncio.run(main())


@pytest.fixture(params=["sync", "async"])
def facade(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_pydantic_ai_agent_reads_back_identical_messages_in_a_fresh_process(
    migrated_url: str, facade: str
) -> None:
    history = run_conversation(migrated_url, facade, "chat")
    assert len(history) == 4 * len(CITIES)  # request, call, tool return, answer per run

    script = Path(__file__).with_name("pydantic_ai_agent.py")
    out = subprocess.run(
        [sys.executable, str(script), migrated_url, "chat"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    read_back = json.loads(out)
    assert read_back == as_json(history)
    # Thinking signature, usage and the image bytes survive.
    assert read_back[1]["parts"][0]["signature"] == "sig-opaque-123"
    assert read_back[3]["usage"]["input_tokens"] == 30
    image = load_message_history(Store.from_url(migrated_url), "chat")[0].parts[1]
    assert isinstance(image, UserPromptPart) and image.content[1].data == PIXEL  # type: ignore[union-attr,index]


def test_the_go_api_and_the_views_see_the_pydantic_ai_conversation(
    migrated_url: str, facade: str
) -> None:
    run_conversation(migrated_url, facade, "chat")
    with Store.from_url(migrated_url) as store:
        messages = [m for m in store.get("chat").messages if m.is_chat]
        first_run = [Role.SYSTEM, Role.USER, Role.ASSISTANT, Role.TOOL, Role.ASSISTANT]
        later_run = [Role.USER, Role.ASSISTANT, Role.TOOL, Role.ASSISTANT]
        assert [m.role for m in messages] == first_run + later_run * 2
        system, user, call, result, answer = messages[:5]
        assert system.content == "Answer with the forecast." and user.content == "Weather in Paris?"
        assert call.tool_calls is not None and call.content == ""
        assert call.tool_calls[0].function.name == "get_weather"
        assert json.loads(call.tool_calls[0].function.arguments) == {"city": "Paris"}
        assert (result.tool_call_id, result.name) == (call.tool_calls[0].id, "get_weather")
        assert result.content == "sunny in Paris"
        assert answer.content == "Forecast: sunny in Paris."

        summary = read_view(store.engine, "session_summary", session_id="chat").as_dicts()[0]
        counts = ("system_messages", "user_messages", "assistant_messages", "tool_messages")
        assert tuple(summary[name] for name in counts) == (1, 3, 6, 3)
        assert summary["tool_call_count"] == 3


def test_the_usage_of_each_model_response_shows_in_usage_daily_stats_and_cost(
    migrated_url: str, facade: str
) -> None:
    run_conversation(migrated_url, facade, "chat")
    with Store.from_url(migrated_url) as store:
        store.set_model_prices({MODEL: {"input": 2.0, "output": 10.0, "cached_input": 1.0}})
        messages = store.get("chat").messages
        answer = next(m for m in messages if m.content.startswith("Forecast"))
        usage = read_view(store.engine, "usage_daily").as_dicts()
    assert (answer.model, answer.input_tokens, answer.output_tokens) == (MODEL, 30, 5)
    assert (answer.cached_tokens, answer.reasoning_tokens) == (12, 2)
    responses = [m for m in messages if m.model is not None]
    assert len(responses) == 6  # each ModelResponse counted once (2 per run)
    assert [(row["model"], row["messages"]) for row in usage] == [(MODEL, 6)]
    input_tokens = sum(m.input_tokens or 0 for m in responses)
    output_tokens = sum(m.output_tokens or 0 for m in responses)
    assert (usage[0]["input_tokens"], usage[0]["output_tokens"]) == (input_tokens, output_tokens)
    cost = ((input_tokens - 36) * 2.0 + 36 * 1.0 + output_tokens * 10.0) / 1_000_000
    assert usage[0]["cost"] == pytest.approx(cost)
    if facade == "sync":  # the CLI reads the same view
        stats = CliRunner().invoke(
            app, ["--url", migrated_url, "stats", "--view", "usage_daily", "--format", "json"]
        )
        assert stats.exit_code == 0, stats.output
        [row] = json.loads(stats.stdout)["usage_daily"]
        assert (row["model"], row["input_tokens"]) == (MODEL, input_tokens)
        assert row["cost"] == pytest.approx(cost)


def test_concurrent_runs_on_one_conversation_lose_and_duplicate_nothing(
    migrated_url: str,
) -> None:
    def one_run(worker: int) -> int:
        with Store.from_url(migrated_url) as store:
            result = make_agent().run_sync(f"Weather in City{worker}?")
            save_new_messages(store, "shared", result.new_messages())
            return len(result.new_messages())

    with ThreadPoolExecutor(4) as pool:
        saved = sum(pool.map(one_run, range(8)))
    with Store.from_url(migrated_url) as store:
        history = load_message_history(store, "shared")
    assert len(history) == saved == 8 * 4
    cities = [
        part.content
        for message in history
        if isinstance(message, ModelRequest)
        for part in message.parts
        if isinstance(part, UserPromptPart)
    ]
    assert sorted(cities) == sorted(f"Weather in City{w}?" for w in range(8))
    # Each run's four messages stay together and in order.
    for start in range(0, len(history), 4):
        assert [m.kind for m in history[start : start + 4]] == ["request", "response"] * 2


def test_an_unknown_conversation_loads_as_an_empty_history_and_is_not_created(
    migrated_url: str,
) -> None:
    with Store.from_url(migrated_url) as store:
        assert load_message_history(store, "nope") == []
        assert "nope" not in store.list()

    async def main() -> list[ModelMessage]:
        async with AsyncStore.from_url(migrated_url) as store:
            return await aload_message_history(store, "nope")

    assert asyncio.run(main()) == []


def test_saving_something_that_is_not_model_messages_fails_and_writes_nothing(
    migrated_url: str,
) -> None:
    with Store.from_url(migrated_url) as store:
        with pytest.raises(InvalidInputError) as caught:
            save_new_messages(store, "bad", [{"not": "a message"}])  # type: ignore[list-item]
        assert caught.value.field == "messages[0]"
        with pytest.raises(InvalidInputError):
            save_new_messages(store, "bad", "text")  # type: ignore[arg-type]
        assert "bad" not in store.list()

    async def main() -> None:
        async with AsyncStore.from_url(migrated_url) as store:
            with pytest.raises(InvalidInputError):
                await asave_new_messages(store, "bad", [42])  # type: ignore[list-item]

    asyncio.run(main())


def test_the_readme_pydantic_ai_example_runs(migrated_url: str, tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n### pydantic-ai\n", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "example.py"
    script.write_text(code.replace("sqlite:///sessions.db", migrated_url))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
