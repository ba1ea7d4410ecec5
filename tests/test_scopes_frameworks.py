"""Framework backends built on a scoped AsyncStore write into that owner's sessions only."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from sqlsessions import AsyncStore, SessionNotFoundError, StoreConfig, migrate
from sqlsessions.integrations.langchain import SqlSessionsChatMessageHistory
from sqlsessions.integrations.openai_agents import SqlSessionsSession


@pytest.fixture
def url(db_url: str) -> Iterator[str]:
    migrate(db_url)
    yield db_url


def test_an_openai_agents_session_and_a_langchain_history_on_a_scoped_store_stay_in_the_owner(
    url: str,
) -> None:
    async def main() -> None:
        root = AsyncStore(StoreConfig(url=url))
        try:
            alice, bob = root.scoped("alice"), root.scoped("bob")
            await bob.append("chat", {"role": "user", "content": "bob's own"})

            agents = SqlSessionsSession("chat", alice)
            await agents.add_items([{"role": "user", "content": "hi from the agents SDK"}])
            history = SqlSessionsChatMessageHistory("chat", async_store=alice)
            await history.aadd_messages([HumanMessage("hi from LangChain"), AIMessage("hello")])

            assert [item["content"] for item in await agents.get_items()] == [
                "hi from the agents SDK",
                "hi from LangChain",
                "hello",
            ]
            assert (await alice.get_if_exists("chat")).owner == "alice"
            assert [m.content for m in (await bob.get_if_exists("chat")).messages] == ["bob's own"]
            with pytest.raises(SessionNotFoundError):
                await root.get_if_exists("chat")

            await history.aclear()
            assert await agents.get_items() == []
            assert [m.content for m in (await bob.get_if_exists("chat")).messages] == ["bob's own"]
        finally:
            await root.close()

    asyncio.run(main())
