"""An ADK agent that runs offline: a canned `BaseLlm` (a function call with a thought signature,
then an answer with usage metadata) and a weather tool, driven by ADK's real `Runner`.

Also runnable as a script, for the "fresh process" tests:
``python tests/adk_agent.py URL APP USER SESSION`` prints the stored events as JSON lines.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncGenerator
from typing import Any

from google.adk.agents import LlmAgent
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import Runner
from google.adk.sessions import BaseSessionService
from google.genai import types

APP = "weather-app"
MODEL_VERSION = "canned-weather-001"
THOUGHT_SIGNATURE = b"\x00\x01opaque-thought-signature\xff"


class CannedWeatherModel(BaseLlm):
    """Asks for the weather tool, then answers from its result; never touches a network."""

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        last = llm_request.contents[-1]
        results = [part.function_response for part in last.parts or [] if part.function_response]
        if results:
            sky = (results[0].response or {}).get("sky", "?")
            yield LlmResponse(
                content=types.Content(role="model", parts=[types.Part(text=f"It is {sky}.")]),
                usage_metadata=types.GenerateContentResponseUsageMetadata(
                    prompt_token_count=21,
                    candidates_token_count=4,
                    thoughts_token_count=3,
                    cached_content_token_count=16,
                    total_token_count=25,
                ),
                model_version=MODEL_VERSION,
            )
            return
        question = "".join(part.text or "" for part in last.parts or [])
        city = question.rsplit(" ", 1)[-1].strip("?") or "Paris"
        yield LlmResponse(
            content=types.Content(
                role="model",
                parts=[
                    types.Part(
                        text="The user wants the weather.",
                        thought=True,
                        thought_signature=THOUGHT_SIGNATURE,
                    ),
                    types.Part(
                        function_call=types.FunctionCall(name="get_weather", args={"city": city})
                    ),
                ],
            )
        )


def get_weather(city: str) -> dict[str, Any]:
    """The weather in a city."""
    return {"city": city, "sky": "sunny" if len(city) % 2 else "cloudy"}


def make_runner(service: BaseSessionService, app_name: str = APP) -> Runner:
    agent = LlmAgent(
        name="forecaster",
        model=CannedWeatherModel(model="canned-weather"),
        tools=[get_weather],
        output_key="last_answer",
    )
    return Runner(agent=agent, app_name=app_name, session_service=service)


async def run_turn(
    runner: Runner, user_id: str, session_id: str, text: str
) -> list[dict[str, Any]]:
    """One user turn; returns every event the runner produced, as JSON (user message first)."""
    events = []
    message = types.Content(role="user", parts=[types.Part(text=text)])
    async for event in runner.run_async(
        user_id=user_id, session_id=session_id, new_message=message, yield_user_message=True
    ):
        events.append(event.model_dump(mode="json", exclude_none=True))
    return events


def event(text: str, delta: dict[str, Any] | None = None, *, ts: float | None = None) -> Event:
    """A user event carrying `text`, as a test appends it by hand (state `delta`, `ts`)."""
    extra: dict[str, Any] = {} if ts is None else {"timestamp": ts}
    return Event(
        author="user",
        invocation_id="inv",
        content=types.Content(role="user", parts=[types.Part(text=text)]),
        actions=EventActions(state_delta=delta or {}),
        **extra,
    )


def texts(session: Any) -> list[str]:
    """The text of each event of an ADK session, in order."""
    return [e.content.parts[0].text for e in session.events]


async def _print_events(url: str, app: str, user: str, session: str) -> None:
    from sqlsessions.integrations.adk import SqlSessionService

    async with SqlSessionService.from_url(url) as service:
        found = await service.get_session(app_name=app, user_id=user, session_id=session)
        assert found is not None
        for event in found.events:
            print(json.dumps(event.model_dump(mode="json", exclude_none=True), sort_keys=True))
        print(json.dumps({"state": found.state}, sort_keys=True))


if __name__ == "__main__":
    asyncio.run(_print_events(*sys.argv[1:5]))
