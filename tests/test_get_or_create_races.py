"""`get` (get-or-create) returns a session even while others delete and re-create it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from sqlsessions import AsyncStore, Message, Role, Store, StoreConfig, migrate

SESSION = "contended"
GETS = 800  # per getter
GETTERS = 2
MAX_CHURN = 1_000_000  # deleter and appender stop when the getters are done, or at this bound


def user(content: str) -> Message:
    return Message(role=Role.USER, content=content)


@pytest.fixture
def url(db_url: str) -> str:
    migrate(db_url)
    return db_url


def test_get_returns_a_session_while_threads_delete_and_append_it(url: str) -> None:
    done = threading.Event()
    errors: list[BaseException] = []
    got: list[str] = []
    config = StoreConfig(url=url, cache_size=0)
    with Store(config) as getter_store, Store(config) as churn_store:

        def get_many() -> None:
            try:
                for _ in range(GETS):
                    got.append(getter_store.get(SESSION).id)
            except BaseException as exc:
                errors.append(exc)

        def churn(action: Any) -> None:
            for i in range(MAX_CHURN):
                if done.is_set():
                    return
                action(i)

        getters = [threading.Thread(target=get_many) for _ in range(GETTERS)]
        others = [
            threading.Thread(target=churn, args=(lambda i: churn_store.delete(SESSION),)),
            threading.Thread(
                target=churn, args=(lambda i: churn_store.append(SESSION, user(str(i))),)
            ),
        ]
        for thread in getters + others:
            thread.start()
        for thread in getters:
            thread.join(600)
        done.set()
        for thread in others:
            thread.join(60)
    assert not errors, f"{len(errors)} of {GETS * GETTERS} gets failed, e.g. {errors[0]!r}"
    assert got == [SESSION] * (GETS * GETTERS)


def test_get_returns_a_session_while_tasks_delete_and_append_it(url: str) -> None:
    async def main() -> list[Any]:
        config = StoreConfig(url=url, cache_size=0)
        getter_store, churn_store = AsyncStore(config), AsyncStore(config)
        done = asyncio.Event()

        async def get_many() -> list[str]:
            return [(await getter_store.get(SESSION)).id for _ in range(GETS)]

        async def churn(kind: str) -> None:
            for i in range(MAX_CHURN):
                if done.is_set():
                    return
                if kind == "delete":
                    await churn_store.delete(SESSION)
                else:
                    await churn_store.append(SESSION, user(str(i)))

        try:
            churners = [asyncio.create_task(churn(kind)) for kind in ("delete", "append")]
            results = await asyncio.gather(
                *(get_many() for _ in range(GETTERS)), return_exceptions=True
            )
            done.set()
            await asyncio.gather(*churners)
        finally:
            await getter_store.close()
            await churn_store.close()
        return results

    results = asyncio.run(main())
    errors = [result for result in results if isinstance(result, BaseException)]
    assert not errors, f"{len(errors)} getters failed, e.g. {errors[0]!r}"
    assert results == [[SESSION] * GETS] * GETTERS
