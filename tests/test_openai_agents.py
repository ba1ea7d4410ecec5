"""The OpenAI Agents SDK adapter: real `Runner` runs with an offline model, on both dialects."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from agents import Agent, Model, ModelResponse, Runner, SessionSettings, Usage, function_tool
from agents.memory import OpenAIResponsesCompactionSession
from agents.usage import InputTokensDetails, OutputTokensDetails
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseReasoningItem,
)
from openai.types.responses.response_reasoning_item import Summary
from sqlalchemy.ext.asyncio import create_async_engine

from sqlsessions import ConflictError, Role, Store, StoreConfig, migrate
from sqlsessions.analytics import read_view
from sqlsessions.config import normalize_url
from sqlsessions.integrations.openai_agents import SqlSessionsSession, items_of

pytestmark = pytest.mark.frameworks

IMAGE = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"


class ScriptedModel(Model):
    """An offline model: on a turn that has no tool result yet it thinks (a reasoning item with
    encrypted content) and calls `get_weather`; once the result is in, it answers."""

    def __init__(self) -> None:
        self.calls = 0

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        self.calls += 1
        n = self.calls
        model_input = args[1] if len(args) > 1 else kwargs["input"]
        last = model_input[-1] if isinstance(model_input, list) else {}
        if isinstance(last, dict) and last.get("type") == "function_call_output":
            output: list[Any] = [
                ResponseOutputMessage(
                    id=f"msg_{n:04d}",
                    type="message",
                    role="assistant",
                    status="completed",
                    content=[
                        ResponseOutputText(
                            type="output_text", text=f"It is {last['output']}.", annotations=[]
                        )
                    ],
                )
            ]
        else:
            output = [
                ResponseReasoningItem(
                    id=f"rs_{n:04d}",
                    type="reasoning",
                    summary=[Summary(type="summary_text", text=f"Need the weather ({n}).")],
                    encrypted_content=f"gAAAAAB{n}\u00e9==",
                ),
                ResponseFunctionToolCall(
                    id=f"fc_{n:04d}",
                    type="function_call",
                    call_id=f"call_{n}",
                    name="get_weather",
                    arguments=json.dumps({"city": f"city {n}"}),
                    status="completed",
                ),
            ]
        return ModelResponse(output=output, usage=Usage(), response_id=f"resp_{n}")

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


class RecordingSession(SqlSessionsSession):
    """Remembers every item the SDK hands to add_items (as JSON), to compare with reads."""

    written: list[Any]

    async def add_items(self, items: list[Any]) -> None:
        self.written = getattr(self, "written", [])
        self.written.extend(copy.deepcopy(items))
        await super().add_items(items)


def as_json(items: list[Any]) -> list[str]:
    return [json.dumps(item, sort_keys=True) for item in items]


@pytest.fixture
def url(db_url: str) -> Iterator[str]:
    migrate(db_url)
    yield db_url


async def run_turns(session: Any, turns: int = 3, model: Model | None = None) -> None:
    agent = Agent(name="weather", model=model or ScriptedModel(), tools=[get_weather])
    first: Any = [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is in this picture, and the weather?"},
                {"type": "input_image", "image_url": IMAGE, "detail": "low"},
            ],
        }
    ]
    for turn in range(turns):
        result = await Runner.run(
            agent, first if turn == 0 else f"And now? ({turn})", session=session
        )
        assert "sunny" in str(result.final_output)


def test_an_agent_run_is_stored_losslessly_and_read_back_by_a_fresh_process(url: str) -> None:
    async def main() -> list[Any]:
        session = RecordingSession.from_url("chat-1", url)
        try:
            await run_turns(session)
            assert as_json(await session.get_items()) == as_json(session.written)
            return session.written
        finally:
            await session.close()

    written = asyncio.run(main())
    kinds = [item.get("type", "message") for item in written]
    assert kinds.count("reasoning") == 3 and kinds.count("function_call") == 3
    reasoning = next(item for item in written if item.get("type") == "reasoning")
    assert reasoning["id"].startswith("rs_") and reasoning["encrypted_content"]
    script = (
        "import asyncio, json, sys\n"
        "from sqlsessions.integrations.openai_agents import SqlSessionsSession, items_of\n"
        "async def main():\n"
        "    s = SqlSessionsSession.from_url('chat-1', sys.argv[1])\n"
        "    print(json.dumps(await s.get_items()))\n"
        "    await s.close()\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, url], capture_output=True, text=True, env=dict(os.environ)
    )
    assert out.returncode == 0, out.stderr
    assert as_json(json.loads(out.stdout)) == as_json(written)


def test_the_go_api_and_the_views_see_roles_tool_calls_and_chat_message_counts(url: str) -> None:
    async def main() -> None:
        session = SqlSessionsSession.from_url("chat-2", url)
        try:
            await run_turns(session, turns=2)
        finally:
            await session.close()

    asyncio.run(main())
    with Store(StoreConfig(url=url)) as store:
        messages = store.get("chat-2").messages
        chat = [m for m in messages if m.is_chat]
        # per turn: user, assistant(tool call), tool, assistant; plus a reasoning item.
        assert [m.role for m in chat[:4]] == [Role.USER, Role.ASSISTANT, Role.TOOL, Role.ASSISTANT]
        assert chat[0].content.startswith("What is in this picture")
        call = chat[1].tool_calls[0] if chat[1].tool_calls else None
        assert call is not None and call.function.name == "get_weather"
        assert chat[2].tool_call_id == call.id and chat[2].content.startswith("sunny")
        assert [m.kind for m in messages if not m.is_chat] == ["reasoning", "reasoning"]
        summary = read_view(store.engine, "session_summary").as_dicts()[0]
        tools = read_view(store.engine, "tool_usage").as_dicts()
    assert (summary["user_messages"], summary["assistant_messages"], summary["tool_messages"]) == (
        2,
        4,
        2,
    )
    assert summary["total_messages"] == 8 and summary["tool_call_count"] == 2
    assert [(row["function_name"], row["calls"]) for row in tools] == [("get_weather", 2)]


def test_concurrent_writers_to_one_session_lose_and_duplicate_nothing(url: str) -> None:
    async def writer(n: int) -> None:
        session = SqlSessionsSession.from_url("shared", url)
        try:
            for batch in range(3):
                await session.add_items(
                    [{"role": "user", "content": f"w{n} b{batch} i{i}"} for i in range(3)]
                )
        finally:
            await session.close()

    async def main() -> list[Any]:
        await asyncio.gather(*(writer(n) for n in range(6)))
        reader = SqlSessionsSession.from_url("shared", url)
        try:
            return await reader.get_items()
        finally:
            await reader.close()

    contents = [item["content"] for item in asyncio.run(main())]
    assert sorted(contents) == sorted(
        f"w{n} b{b} i{i}" for n in range(6) for b in range(3) for i in range(3)
    )
    for start in range(0, len(contents), 3):  # each batch lands whole and in order
        batch = contents[start : start + 3]
        assert batch == [batch[0][:-1] + str(i) for i in range(3)]


def test_get_items_returns_the_latest_n_in_order_and_an_explicit_limit_wins(url: str) -> None:
    async def main() -> None:
        session = SqlSessionsSession.from_url(
            "limits", url, session_settings=SessionSettings(limit=2)
        )
        try:
            assert await session.get_items() == []
            await session.add_items([{"role": "user", "content": str(i)} for i in range(5)])
            assert [i["content"] for i in await session.get_items()] == ["3", "4"]
            assert [i["content"] for i in await session.get_items(limit=4)] == ["1", "2", "3", "4"]
            assert await session.get_items(limit=0) == []
        finally:
            await session.close()

    asyncio.run(main())


def test_pop_item_and_clear_session(url: str) -> None:
    async def main() -> None:
        session = SqlSessionsSession.from_url("pop", url)
        try:
            assert await session.pop_item() is None
            items = [
                {"role": "user", "content": "hi"},
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "x"},
            ]
            await session.add_items(items)
            assert await session.pop_item() == items[1]
            assert await session.get_items() == items[:1]
            await session.clear_session()
            assert await session.get_items() == []
            assert await session.pop_item() is None
        finally:
            await session.close()

    asyncio.run(main())


def test_an_engine_passed_in_is_never_closed(url: str) -> None:
    async def main() -> None:
        engine = create_async_engine(normalize_url(url, asynchronous=True))
        try:
            session = SqlSessionsSession.from_engine("engine", engine)
            await session.add_items([{"role": "user", "content": "hi"}])
            await session.close()
            async with engine.connect():  # still usable
                pass
            again = SqlSessionsSession.from_engine("engine", engine)
            assert await again.get_items() == [{"role": "user", "content": "hi"}]
        finally:
            await engine.dispose()

    asyncio.run(main())


def test_messages_written_through_the_go_api_read_as_responses_items(url: str) -> None:
    from sqlsessions import ToolCall, ToolFunction

    with Store(StoreConfig(url=url)) as store:
        go = store.get("go")
        go.add_message(Role.USER, "hi")
        go.add_message_with_tool_calls(
            Role.ASSISTANT, "", [ToolCall(id="c1", function=ToolFunction(name="f", arguments="{}"))]
        )
        go.add_tool_result("c1", "done")
        store.save(go)

    async def main() -> list[Any]:
        session = SqlSessionsSession.from_url("go", url)
        try:
            return await session.get_items()
        finally:
            await session.close()

    assert asyncio.run(main()) == [
        {"role": "user", "content": "hi"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "done"},
    ]


def test_a_cancelled_add_items_still_lands_whole_before_the_cancellation_is_raised(
    url: str,
) -> None:
    async def main() -> list[Any]:
        session = SqlSessionsSession.from_url("cancel", url)
        try:
            batch = [{"role": "user", "content": str(i)} for i in range(5)]
            task = asyncio.ensure_future(session.add_items(batch))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return await session.get_items()
        finally:
            await session.close()

    assert [item["content"] for item in asyncio.run(main())] == ["0", "1", "2", "3", "4"]


class UsageReportingModel(ScriptedModel):
    """The scripted model, reporting usage: response n reads 100 * n input tokens (40 of them
    cached) and writes 10 (3 of them reasoning)."""

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        response = await super().get_response(*args, **kwargs)
        response.usage = Usage(
            requests=1,
            input_tokens=100 * self.calls,
            input_tokens_details=InputTokensDetails(cached_tokens=40, cache_write_tokens=0),
            output_tokens=10,
            output_tokens_details=OutputTokensDetails(reasoning_tokens=3),
            total_tokens=100 * self.calls + 10,
        )
        return response


def test_each_model_response_records_its_usage_once_and_usage_daily_prices_it(url: str) -> None:
    async def main() -> None:
        session = SqlSessionsSession.from_url("usage", url, model="gpt-test")
        try:
            await run_turns(session, turns=2, model=UsageReportingModel())
        finally:
            await session.close()

    asyncio.run(main())
    with Store(StoreConfig(url=url)) as store:
        store.set_model_prices({"gpt-test": {"input": 2.0, "output": 8.0, "cached_input": 0.5}})
        messages = store.get("usage").messages
        usage = read_view(store.engine, "usage_daily").as_dicts()
    reported = [(m.tool_calls is not None, m.input_tokens) for m in messages if m.model]
    # the tool call carries its response's usage, the answer its own: four responses, once each
    assert reported == [(True, 100), (False, 200), (True, 300), (False, 400)]
    assert all((m.cached_tokens, m.reasoning_tokens) == (40, 3) for m in messages if m.model)
    assert [(row["model"], row["messages"]) for row in usage] == [("gpt-test", 4)]
    assert (usage[0]["input_tokens"], usage[0]["output_tokens"]) == (1000, 40)
    cost = ((1000 - 160) * 2.0 + 160 * 0.5 + 40 * 8.0) / 1_000_000
    assert usage[0]["cost"] == pytest.approx(cost)


class CompactingClient:
    """Stands for AsyncOpenAI: `responses.compact` returns one compaction item."""

    def __init__(self) -> None:
        self.responses = self

    async def compact(self, **kwargs: Any) -> Any:
        item = {"type": "compaction", "id": "cmp_1", "encrypted_content": "gAAA-summary"}
        return type("Compacted", (), {"output": [item], "usage": None})()


def test_sdk_compaction_replaces_the_items_and_keeps_the_replaced_ones_archived(url: str) -> None:
    async def main() -> tuple[list[Any], list[Any], list[Any]]:
        inner = SqlSessionsSession.from_url("compacted", url)
        session = OpenAIResponsesCompactionSession(
            "compacted",
            inner,
            client=CompactingClient(),  # type: ignore[arg-type]
            should_trigger_compaction=lambda context: True,
        )
        try:
            await run_turns(session, turns=1)
            before = await inner.get_items()
            await session.run_compaction({"force": True, "compaction_mode": "input"})
            return before, await inner.get_items(), await session.get_items()
        finally:
            await inner.close()

    first_run, after, seen = asyncio.run(main())
    compacted = [{"type": "compaction", "id": "cmp_1", "encrypted_content": "gAAA-summary"}]
    assert first_run == compacted and after == compacted and seen == compacted
    with Store(StoreConfig(url=url)) as store:
        segments = store.archived_segments("compacted")
        # the Runner's automatic compaction archived the turn, the manual one its result
        assert [s.message_count for s in segments] == [5, 1]
        turn = [item for m in store.archived_history("compacted", 1) for item in items_of(m)]
        assert [item.get("type", "message") for item in turn] == [
            "message",
            "reasoning",
            "function_call",
            "function_call_output",
            "message",
        ]
        assert turn[0]["content"][1]["image_url"] == IMAGE
        restored = store.restore_history("compacted", 1)
        assert restored.archived_segment == 3 and len(store.get("compacted").messages) == 5


def test_replace_items_archives_what_it_replaces_and_checks_the_version(url: str) -> None:
    async def main() -> tuple[int, list[Any]]:
        session = SqlSessionsSession.from_url("replace", url)
        try:
            await session.add_items([{"role": "user", "content": str(i)} for i in range(3)])
            replaced = await session.replace_items([{"role": "user", "content": "summary"}])
            with pytest.raises(ConflictError):
                await session.replace_items([], expected_version=replaced.version - 1)
            return replaced.archived_segment or 0, await session.get_items()
        finally:
            await session.close()

    segment, items = asyncio.run(main())
    assert items == [{"role": "user", "content": "summary"}]
    with Store(StoreConfig(url=url)) as store:
        archived = store.archived_history("replace", segment)
    assert [m.content for m in archived] == ["0", "1", "2"]
