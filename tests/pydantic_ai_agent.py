"""A pydantic-ai agent that runs offline (`FunctionModel`): it thinks (with a signature), calls
a weather tool, then answers. Runs through `Store` or `AsyncStore` alike.

Also runnable as a script, for the "fresh process" tests:
``python tests/pydantic_ai_agent.py URL SESSION`` prints the stored history as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from pydantic_ai import Agent, BinaryContent
from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelResponse,
    TextPart,
    ThinkingPart,
    ToolCallPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

from sqlsessions import AsyncStore, Store
from sqlsessions.integrations.pydantic_ai import (
    aload_message_history,
    asave_new_messages,
    load_message_history,
    save_new_messages,
)

PIXEL = b"\x89PNG\r\n\x1a\n\x00fake-image"


def _model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    last = messages[-1]
    returns = [part for part in last.parts if part.part_kind == "tool-return"]
    if returns:
        return ModelResponse(
            parts=[TextPart(f"Forecast: {returns[0].content}.")],
            usage=RequestUsage(
                input_tokens=30,
                output_tokens=5,
                cache_read_tokens=12,
                details={"reasoning_tokens": 2},
            ),
        )
    city = "Paris"
    for part in last.parts:
        if part.part_kind == "user-prompt":
            text = part.content if isinstance(part.content, str) else str(part.content[0])
            city = text.rsplit(" ", 1)[-1].strip("?")
    return ModelResponse(
        parts=[
            ThinkingPart("Need the weather tool.", signature="sig-opaque-123"),
            ToolCallPart("get_weather", {"city": city}),
        ]
    )


def make_agent() -> Agent[None, str]:
    agent = Agent(FunctionModel(_model), system_prompt="Answer with the forecast.")

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    return agent


def prompt(city: str, with_image: bool) -> Any:
    text = f"Weather in {city}?"
    return [text, BinaryContent(PIXEL, media_type="image/png")] if with_image else text


def converse(store: Store, session_id: str, cities: list[str]) -> list[ModelMessage]:
    """One run per city through a sync store; returns the whole history as the agent saw it."""
    agent = make_agent()
    history: list[ModelMessage] = []
    for i, city in enumerate(cities):
        history = load_message_history(store, session_id)
        result = agent.run_sync(prompt(city, i == 0), message_history=history)
        save_new_messages(store, session_id, result.new_messages())
        history = result.all_messages()
    return history


async def aconverse(store: AsyncStore, session_id: str, cities: list[str]) -> list[ModelMessage]:
    """`converse` through an AsyncStore."""
    agent = make_agent()
    history: list[ModelMessage] = []
    for i, city in enumerate(cities):
        history = await aload_message_history(store, session_id)
        result = await agent.run(prompt(city, i == 0), message_history=history)
        await asave_new_messages(store, session_id, result.new_messages())
        history = result.all_messages()
    return history


def as_json(messages: list[ModelMessage]) -> Any:
    return json.loads(ModelMessagesTypeAdapter.dump_json(messages))


if __name__ == "__main__":
    with Store.from_url(sys.argv[1]) as store:
        print(json.dumps(as_json(load_message_history(store, sys.argv[2]))))
    asyncio.run(asyncio.sleep(0))
