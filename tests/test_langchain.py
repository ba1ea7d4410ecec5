"""The LangChain adapter: RunnableWithMessageHistory over GenericFakeChatModel, both dialects."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    message_to_dict,
)
from langchain_core.runnables import RunnableLambda
from langchain_core.runnables.history import RunnableWithMessageHistory

from sqlsessions import AsyncStore, InvalidInputError, Role, Store, StoreConfig, migrate
from sqlsessions.analytics import read_view
from sqlsessions.integrations.langchain import SqlSessionsChatMessageHistory

pytestmark = [
    pytest.mark.frameworks,
    pytest.mark.filterwarnings("ignore:RunnableWithMessageHistory is deprecated"),
]


def scripted_replies(turns: int) -> Iterator[AIMessage]:
    """Per turn: an AI message calling `lookup` (with usage metadata), then the final answer."""
    for n in range(turns):
        yield AIMessage(
            content="",
            id=f"run-call-{n}",
            tool_calls=[{"name": "lookup", "args": {"q": f"order {n}"}, "id": f"call_{n}"}],
            usage_metadata={"input_tokens": 10 + n, "output_tokens": 3, "total_tokens": 13 + n},
            response_metadata={"model_name": "fake", "finish_reason": "tool_calls"},
        )
        yield AIMessage(
            content=[{"type": "text", "text": f"Order {n} has shipped."}],
            id=f"run-answer-{n}",
            usage_metadata={
                "input_tokens": 20,
                "output_tokens": 5,
                "total_tokens": 25,
                "input_token_details": {"cache_read": 8},
                "output_token_details": {"reasoning": 2},
            },
            response_metadata={"model": "fake"},
        )


def agent(turns: int) -> RunnableLambda[Any, list[BaseMessage]]:
    """A tool-using agent step: model, tool, model; returns the new messages of the turn."""
    model = GenericFakeChatModel(messages=scripted_replies(turns))

    async def step(messages: list[BaseMessage]) -> list[BaseMessage]:
        call = await model.ainvoke(messages)
        assert isinstance(call, AIMessage) and call.tool_calls
        tool_call = call.tool_calls[0]
        result = ToolMessage(
            content=f"found {tool_call['args']['q']}",
            tool_call_id=tool_call["id"] or "",
            artifact={"rows": [1, 2.5, None], "source": "db"},
            status="success",
        )
        answer = await model.ainvoke([*messages, call, result])
        return [call, result, answer]

    return RunnableLambda(step)


class RecordingHistory(SqlSessionsChatMessageHistory):
    """Remembers what LangChain hands to aadd_messages (as dicts), to compare with reads."""

    written: list[dict[str, Any]] = []

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        type(self).written.extend(json.loads(json.dumps(message_to_dict(m))) for m in messages)
        await super().aadd_messages(messages)


def as_json(messages: Sequence[BaseMessage]) -> list[str]:
    return [json.dumps(message_to_dict(m), sort_keys=True) for m in messages]


@pytest.fixture
def url(db_url: str) -> Iterator[str]:
    migrate(db_url)
    yield db_url


def run_conversation(url: str, session_id: str, turns: int = 3) -> list[BaseMessage]:
    RecordingHistory.written = []
    histories: list[RecordingHistory] = []

    def history(sid: str) -> RecordingHistory:
        histories.append(RecordingHistory.from_url(sid, url))  # type: ignore[arg-type]
        return histories[-1]

    chain = RunnableWithMessageHistory(agent(turns), history)  # type: ignore[arg-type]
    config: Any = {"configurable": {"session_id": session_id}}

    async def main() -> list[BaseMessage]:
        try:
            for n in range(turns):
                question: list[BaseMessage] = [HumanMessage(content=f"Where is order {n}?")]
                if n == 0:
                    question.insert(0, SystemMessage(content="You track orders."))
                await chain.ainvoke(question, config)
            return await histories[-1].aget_messages()
        finally:
            for opened in histories:
                await opened.aclose()

    return asyncio.run(main())


def test_a_conversation_with_tool_calls_round_trips_every_message(url: str) -> None:
    read = run_conversation(url, "lc-1")
    assert [m.type for m in read[:5]] == ["system", "human", "ai", "tool", "ai"]
    assert as_json(read) == [json.dumps(m, sort_keys=True) for m in RecordingHistory.written]
    call, tool = read[2], read[3]
    assert isinstance(call, AIMessage) and call.usage_metadata is not None
    assert call.usage_metadata["input_tokens"] == 10 and call.tool_calls[0]["id"] == "call_0"
    assert isinstance(tool, ToolMessage) and tool.status == "success"
    assert tool.artifact == {"rows": [1, 2.5, None], "source": "db"}
    script = (
        "import json, sys\n"
        "from langchain_core.messages import message_to_dict\n"
        "from sqlsessions.integrations.langchain import SqlSessionsChatMessageHistory\n"
        "h = SqlSessionsChatMessageHistory.from_url('lc-1', sys.argv[1])\n"
        "print(json.dumps([message_to_dict(m) for m in h.messages]))\n"
        "h.close()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, url], capture_output=True, text=True, env=dict(os.environ)
    )
    assert out.returncode == 0, out.stderr
    assert [json.dumps(m, sort_keys=True) for m in json.loads(out.stdout)] == as_json(read)


def test_the_go_api_and_the_views_see_roles_tool_calls_and_counts(url: str) -> None:
    run_conversation(url, "lc-2", turns=2)
    with Store(StoreConfig(url=url)) as store:
        messages = store.get("lc-2").messages
        assert [m.role for m in messages[:5]] == [
            Role.SYSTEM,
            Role.USER,
            Role.ASSISTANT,
            Role.TOOL,
            Role.ASSISTANT,
        ]
        call = messages[2].tool_calls[0] if messages[2].tool_calls else None
        assert call is not None and call.function.name == "lookup"
        assert json.loads(call.function.arguments) == {"q": "order 0"}
        assert (
            messages[3].tool_call_id == "call_0" and messages[4].content == "Order 0 has shipped."
        )
        summary = read_view(store.engine, "session_summary").as_dicts()[0]
    counts = (summary["system_messages"], summary["user_messages"], summary["assistant_messages"])
    assert counts == (1, 2, 4)
    assert (summary["tool_messages"], summary["tool_call_count"]) == (2, 2)


def test_the_usage_langchain_reports_shows_per_model_in_usage_daily_with_its_cost(
    url: str,
) -> None:
    run_conversation(url, "lc-usage", turns=2)
    with Store(StoreConfig(url=url)) as store:
        store.set_model_prices({"fake": {"input": 1.0, "output": 2.0, "cached_input": 0.5}})
        answer = store.get("lc-usage").messages[4]
        usage = read_view(store.engine, "usage_daily").as_dicts()
    assert (answer.model, answer.input_tokens, answer.output_tokens) == ("fake", 20, 5)
    assert (answer.cached_tokens, answer.reasoning_tokens) == (8, 2)
    assert len(usage) == 1 and usage[0]["model"] == "fake" and usage[0]["messages"] == 4
    # two calls (10 + 11 input, 3 output each), two answers (20 input of which 8 cached, 5 out)
    assert (usage[0]["input_tokens"], usage[0]["output_tokens"]) == (61, 16)
    assert usage[0]["cached_tokens"] == 16
    expected = (61 - 16) * 1.0 + 16 * 0.5 + 16 * 2.0
    assert usage[0]["cost"] == pytest.approx(expected / 1_000_000)


def test_sync_and_async_methods_agree_and_clear_empties_the_session(url: str) -> None:
    history = SqlSessionsChatMessageHistory.from_url("lc-3", url)
    try:
        history.add_messages([HumanMessage(content="hi"), AIMessage(content="hello")])
        history.add_message(ChatMessage(role="system", content="be brief"))

        async def read() -> list[BaseMessage]:
            return await history.aget_messages()

        assert as_json(asyncio.run(read())) == as_json(history.messages)
        assert [m.type for m in history.messages] == ["human", "ai", "chat"]
        history.clear()
        assert history.messages == []
    finally:
        asyncio.run(history.aclose())


def test_concurrent_writers_to_one_session_lose_and_duplicate_nothing(url: str) -> None:
    async def writer(n: int) -> None:
        async with AsyncStore(StoreConfig(url=url)) as store:
            history = SqlSessionsChatMessageHistory("shared", async_store=store)
            for batch in range(3):
                await history.aadd_messages(
                    [HumanMessage(content=f"w{n} b{batch} i{i}") for i in range(2)]
                )

    async def main() -> list[BaseMessage]:
        await asyncio.gather(*(writer(n) for n in range(6)))
        async with AsyncStore(StoreConfig(url=url)) as store:
            return await SqlSessionsChatMessageHistory("shared", async_store=store).aget_messages()

    contents = [str(m.content) for m in asyncio.run(main())]
    assert sorted(contents) == sorted(
        f"w{n} b{b} i{i}" for n in range(6) for b in range(3) for i in range(2)
    )
    for start in range(0, len(contents), 2):
        assert contents[start].endswith("i0") and contents[start + 1] == contents[start][:-1] + "1"


def test_a_store_passed_in_is_not_closed_and_a_missing_one_is_named(url: str) -> None:
    with Store(StoreConfig(url=url)) as store:
        history = SqlSessionsChatMessageHistory("lc-4", store=store)
        history.add_messages([HumanMessage(content="x")])
        history.close()
        assert [m.content for m in history.messages] == ["x"]
        with pytest.raises(InvalidInputError, match="async_store"):
            _ = history.async_store


def test_messages_written_through_the_go_api_read_as_langchain_messages(url: str) -> None:
    from sqlsessions import ToolCall, ToolFunction

    with Store(StoreConfig(url=url)) as store:
        go = store.get("go")
        go.add_message(Role.USER, "hi")
        go.add_message_with_tool_calls(
            Role.ASSISTANT,
            "",
            [ToolCall(id="c1", function=ToolFunction(name="f", arguments='{"a": 1}'))],
        )
        go.add_tool_result("c1", "done")
        store.save(go)
        read = SqlSessionsChatMessageHistory("go", store=store).messages
    assert [m.type for m in read] == ["human", "ai", "tool"]
    assert isinstance(read[1], AIMessage) and read[1].tool_calls[0]["args"] == {"a": 1}
    assert isinstance(read[2], ToolMessage) and read[2].tool_call_id == "c1"
