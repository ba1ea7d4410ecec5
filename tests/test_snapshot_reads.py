"""Every read of one session comes from one snapshot, even while a writer rewrites it.

A rewriter keeps replacing a PostgreSQL session's messages (with tool calls) and metadata,
every piece tagged with the version it belongs to; readers through every read path check that
what they got belongs to one version. (SQLite reads run in one transaction, a snapshot by
construction; PostgreSQL reads run in autocommit, where each statement has its own snapshot.)
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sqlsessions import (
    AsyncStore,
    Message,
    Role,
    Store,
    StoreConfig,
    ToolCall,
    ToolFunction,
    migrate,
)

SESSION = "rewritten"
READS_PER_READER = 400  # five readers: 2,000 reads per facade
READERS = ("get, cache on", "get, cache off", "get_if_exists", "history", "last_messages")
MAX_REWRITES = 1_000_000  # the rewriter stops when the readers are done, or at this bound


def version_messages(version: int) -> list[Message]:
    """A conversation whose every message and tool call names `version`."""
    calls = [
        ToolCall(
            id=f"call-{version}-{i}",
            function=ToolFunction(name="lookup", arguments=json.dumps({"v": version})),
        )
        for i in range(2)
    ]
    return [
        Message(role=Role.USER, content=f"{version}:ask"),
        Message(role=Role.ASSISTANT, content=f"{version}:call", tool_calls=calls),
        Message(role=Role.TOOL, content=f"{version}:r0", tool_call_id=f"call-{version}-0"),
        Message(role=Role.TOOL, content=f"{version}:r1", tool_call_id=f"call-{version}-1"),
        Message(role=Role.ASSISTANT, content=f"{version}:done"),
    ]


def torn_session(session: Any) -> str | None:
    """Why a loaded session mixes versions (None if it is one whole version)."""
    version = session.metadata.get("version")
    if session.metadata.get("echo") != version or not isinstance(version, int):
        return f"metadata {session.metadata}"
    if session.messages != version_messages(version):
        return f"metadata of {version}, messages {[m.content for m in session.messages]}"
    return None


def torn_history(messages: list[Message]) -> str | None:
    """Why a history() or last_messages() result mixes versions (None if it is one whole
    version)."""
    if not messages:
        return "no messages"
    version = int(messages[0].content.split(":")[0])
    if messages != version_messages(version):
        return f"messages {[(m.content, bool(m.tool_calls)) for m in messages]}"
    return None


@pytest.fixture
def rewritten(postgres_url: str) -> Iterator[str]:
    """The URL of a database where a thread keeps rewriting SESSION until the test ends
    (and has rewritten it several times by then)."""
    stop = threading.Event()
    rewrites = [0]
    failures: list[BaseException] = []
    migrate(postgres_url)
    with Store.from_url(postgres_url) as store:
        session = store.get(SESSION)

        def rewrite(version: int) -> None:
            session.messages.clear()
            session.messages.extend(version_messages(version))
            session.metadata.clear()
            session.metadata.update(version=version, echo=version)
            store.save(session)

        rewrite(0)

        def loop() -> None:
            try:
                for version in range(1, MAX_REWRITES):
                    if stop.is_set():
                        return
                    rewrite(version)
                    rewrites[0] = version
            except BaseException as exc:  # reported by the test, not lost in the thread
                failures.append(exc)

        thread = threading.Thread(target=loop, name="rewriter", daemon=True)
        thread.start()
        try:
            yield postgres_url
        finally:
            stop.set()
            thread.join(60)
    assert not failures, failures
    assert not thread.is_alive()
    assert rewrites[0] >= 10, f"the rewriter ran only {rewrites[0]} times alongside the readers"


def check_reads(results: dict[str, list[str | None]]) -> None:
    total = sum(len(found) for found in results.values())
    torn = [(reader, why) for reader, found in results.items() for why in found if why]
    assert total >= len(READERS) * READS_PER_READER
    assert not torn, f"{len(torn)} torn reads out of {total}, e.g. {torn[:3]}"


def sync_readers(cached: Store, uncached: Store) -> dict[str, Callable[[], str | None]]:
    return {
        "get, cache on": lambda: torn_session(cached.get(SESSION)),
        "get, cache off": lambda: torn_session(uncached.get(SESSION)),
        "get_if_exists": lambda: torn_session(cached.get_if_exists(SESSION)),
        "history": lambda: torn_history(uncached.history(SESSION, limit=50)),
        "last_messages": lambda: torn_history(uncached.last_messages(SESSION)),
    }


@pytest.mark.postgres
def test_sync_reads_under_a_concurrent_rewriter_are_never_torn(rewritten: str) -> None:
    with (
        Store.from_url(rewritten) as cached,
        Store(StoreConfig(url=rewritten, cache_size=0)) as uncached,
    ):
        readers = sync_readers(cached, uncached)
        results: dict[str, list[str | None]] = {name: [] for name in readers}

        def run(name: str) -> None:
            for _ in range(READS_PER_READER):
                results[name].append(readers[name]())

        threads = [threading.Thread(target=run, args=(name,)) for name in readers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
    check_reads(results)


@pytest.mark.postgres
def test_async_reads_under_a_concurrent_rewriter_are_never_torn(rewritten: str) -> None:
    async def main() -> dict[str, list[str | None]]:
        cached = AsyncStore.from_url(rewritten)
        uncached = AsyncStore(StoreConfig(url=rewritten, cache_size=0))
        readers: dict[str, Callable[[], Any]] = {
            "get, cache on": lambda: cached.get(SESSION),
            "get, cache off": lambda: uncached.get(SESSION),
            "get_if_exists": lambda: cached.get_if_exists(SESSION),
            "history": lambda: uncached.history(SESSION, limit=50),
            "last_messages": lambda: uncached.last_messages(SESSION),
        }
        results: dict[str, list[str | None]] = {name: [] for name in readers}

        async def run(name: str) -> None:
            check = torn_history if name in ("history", "last_messages") else torn_session
            for _ in range(READS_PER_READER):
                results[name].append(check(await readers[name]()))

        try:
            await asyncio.gather(*(run(name) for name in readers))
        finally:
            await cached.close()
            await uncached.close()
        return results

    check_reads(asyncio.run(main()))
