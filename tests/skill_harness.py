"""Helpers for the Skill tests: one test body drives a Skill on a `Store` and on an `AsyncStore`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest

from sqlsessions import AsyncStore, Role, Skill, Store, StoreConfig


@dataclass
class SkillHarness:
    """Skills of one kind (sync or async) on a test database, and a plain `Store` on the same
    database to arrange sessions and to look at what the tools left behind."""

    url: str
    kind: str
    store: Store
    loop: asyncio.AbstractEventLoop | None
    _stack: ExitStack = field(default_factory=ExitStack)

    def skill(self, **options: Any) -> Skill:
        """A Skill (on a fresh Store or AsyncStore of the harness's kind) built with `options`
        (`allow`, `owner`, `agent_id`); every tool is allowed unless `allow` says otherwise."""
        options.setdefault("allow", Skill.ALL_TOOLS)
        return Skill(self.open_store(), **options)

    def open_store(self) -> Store | AsyncStore:
        config = StoreConfig(url=self.url)
        if self.loop is None:
            return self._stack.enter_context(Store(config))
        store = AsyncStore(config)
        loop = self.loop
        self._stack.callback(lambda: loop.run_until_complete(store.close()))
        return store

    def call(self, skill: Skill, name: str, arguments: Any = None) -> dict[str, Any]:
        """Run a tool the way an agent framework would: through the handler of `tools()`
        (or `call`/`acall` when the tool is not listed), checking the result is JSON."""
        listed = {tool.name: tool for tool in skill.tools()}
        tool = listed.get(name) if isinstance(name, str) else None
        if self.loop is None:
            result = tool.handler(arguments) if tool else skill.call(name, arguments)
        else:
            coroutine = tool.async_handler(arguments) if tool else skill.acall(name, arguments)
            result = self.loop.run_until_complete(coroutine)
        json.dumps(result)  # every result is JSON-serialisable
        return result

    def make_session(self, session_id: str, n_messages: int = 0, agent_id: str = "") -> None:
        session = self.store.get(session_id)
        session.agent_id = agent_id
        for i in range(n_messages):
            session.add_message(Role.USER if i % 2 == 0 else Role.ASSISTANT, f"message {i}")
        self.store.save(session)

    def snapshot(self) -> dict[str, str]:
        """Every session in the database as its Go JSON, by id (to show nothing changed)."""
        self.store.clear_cache()
        return {sid: self.store.get_if_exists(sid).to_json() for sid in sorted(self.store.list())}

    def close(self) -> None:
        self._stack.close()
        self.store.close()
        if self.loop is not None:
            self.loop.close()


@pytest.fixture(params=["sync", "async"])
def skill_kind(request: pytest.FixtureRequest) -> str:
    """Which store the Skill runs on: `Store` (call) or `AsyncStore` (acall)."""
    return str(request.param)


@pytest.fixture
def harness(migrated_url: str, skill_kind: str) -> Iterator[SkillHarness]:
    loop = asyncio.new_event_loop() if skill_kind == "async" else None
    made = SkillHarness(migrated_url, skill_kind, Store(StoreConfig(url=migrated_url)), loop)
    yield made
    made.close()


def assert_error(result: dict[str, Any], *words: str) -> None:
    assert set(result) == {"error"}, result
    for word in words:
        assert word in result["error"], result["error"]
