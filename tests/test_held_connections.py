"""Connections a store keeps checked out between operations: never at anyone's expense.

The store reuses an idle connection instead of a round trip through SQLAlchemy's pool (see
`sqlsessions.held_connections`). These tests pin down what a user must never notice: the
pool always has room, listeners see every checkout, an engine passed in is left alone,
waiting operations are served, and closing the store returns everything.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import pytest
from sqlalchemy import create_engine, event
from sqlalchemy.ext.asyncio import create_async_engine

from sqlsessions import AsyncStore, Message, Role, Store, StoreConfig
from sqlsessions.config import normalize_url
from store_fixtures import StoreOpener


def _pool(store: Any) -> Any:
    return store.engine.pool


def _append_many(store: Any, session_id: str, count: int) -> None:
    for i in range(count):
        store.append(session_id, Message(role=Role.USER, content=f"m{i}"))


def test_between_operations_a_store_keeps_fewer_connections_than_its_pool_holds(
    open_store: StoreOpener,
) -> None:
    store = open_store(engine_options={"pool_size": 3, "max_overflow": 0})
    _append_many(store, "s", 5)
    assert store.get("s") is not None
    assert 1 <= _pool(store).checkedout() <= 2  # one held for reuse; the pool keeps one free


def test_a_pool_of_one_connection_is_never_held_so_others_can_check_it_out(
    open_store: StoreOpener,
) -> None:
    store = open_store(engine_options={"pool_size": 1, "max_overflow": 0, "pool_timeout": 1})
    _append_many(store, "s", 3)
    assert _pool(store).checkedout() == 0


def test_closing_a_store_returns_every_connection_it_held(open_store: StoreOpener) -> None:
    store = open_store()
    _append_many(store, "s", 3)
    pool = _pool(store)
    assert pool.checkedout() >= 1
    store.close()
    assert pool.checkedout() == 0


def test_a_pool_checkout_listener_sees_every_operation_once_it_is_added(
    open_store: StoreOpener,
) -> None:
    store = open_store()
    _append_many(store, "s", 2)  # a connection is held now
    checkouts: list[object] = []
    event.listen(store.engine, "checkout", lambda *args: checkouts.append(args))
    _append_many(store, "s", 4)
    assert len(checkouts) == 4
    assert _pool(store).checkedout() == 0  # the one held before the listener went back


def test_a_connection_the_store_held_goes_back_to_the_pool_out_of_autocommit(
    open_store: StoreOpener,
) -> None:
    store = open_store()
    _append_many(store, "s", 3)  # an append runs in autocommit, on the connection held after it
    autocommit_at_checkout: list[bool] = []

    def checked_out(dbapi_connection: Any, *args: Any) -> None:
        raw = getattr(dbapi_connection, "driver_connection", dbapi_connection)
        autocommit_at_checkout.append(bool(getattr(raw, "autocommit", False)))

    # The held connection goes back to the pool; the appends check it out again.
    event.listen(store.engine, "checkout", checked_out)
    _append_many(store, "s", 2)
    assert autocommit_at_checkout and not any(autocommit_at_checkout)
    assert [m.content for m in store.get("s").messages] == ["m0", "m1", "m2", "m0", "m1"]


def test_operations_waiting_for_a_small_pool_are_all_served(open_store: StoreOpener) -> None:
    store = open_store(engine_options={"pool_size": 2, "max_overflow": 0, "pool_timeout": 10})
    writers, each = 12, 5
    if isinstance(store, Store):
        errors: list[BaseException] = []

        def write(k: int) -> None:
            try:
                _append_many(store, f"w{k}", each)
            except BaseException as exc:  # reported below, in the test thread
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(k,)) for k in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
    else:
        async_store: AsyncStore = store.async_store

        async def write(k: int) -> None:
            for i in range(each):
                await async_store.append(f"w{k}", Message(role=Role.USER, content=f"m{i}"))

        async def all_writers() -> None:
            await asyncio.gather(*(write(k) for k in range(writers)))

        store.run(all_writers())
    for k in range(writers):
        assert [m.content for m in store.get(f"w{k}").messages] == [f"m{i}" for i in range(each)]
    assert _pool(store).checkedout() <= 1


def test_a_store_given_an_engine_leaves_every_connection_in_that_engines_pool(
    migrated_url: str, db_schema: str | None, store_kind: str
) -> None:
    config = StoreConfig(url=migrated_url, schema=db_schema)
    if store_kind == "sync":
        engine = create_engine(normalize_url(migrated_url))
        try:
            with Store(config, engine=engine) as store:
                _append_many(store, "s", 3)
                assert len(store.get("s").messages) == 3
                assert engine.pool.checkedout() == 0
        finally:
            engine.dispose()
        return

    async def scenario() -> None:
        engine = create_async_engine(normalize_url(migrated_url, asynchronous=True))
        try:
            async with AsyncStore(config, engine=engine) as store:
                for i in range(3):
                    await store.append("s", Message(role=Role.USER, content=f"m{i}"))
                loaded = await store.get("s")
                assert loaded is not None and len(loaded.messages) == 3
                assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        finally:
            await engine.dispose()

    asyncio.run(scenario())


@pytest.mark.parametrize("option", [{"pool_pre_ping": True}, {"pool_recycle": 3600}])
def test_a_pool_that_pings_or_recycles_connections_checks_out_every_operation(
    open_store: StoreOpener, option: dict[str, Any]
) -> None:
    store = open_store(engine_options=option)
    _append_many(store, "s", 3)
    assert _pool(store).checkedout() == 0


def test_a_forked_child_never_uses_the_connection_its_parent_holds(
    migrated_url: str, db_schema: str | None
) -> None:
    rounds = 40
    with Store(StoreConfig(url=migrated_url, schema=db_schema)) as store:
        _append_many(store, "parent", 1)
        assert _pool(store).checkedout() >= 1  # the parent holds a connection now
        pid = os.fork()
        if pid == 0:  # the child, without even the dispose(close=False) SQLAlchemy advises
            status = 1
            try:
                _append_many(store, "child", rounds)
                status = 0
            finally:
                os._exit(status)
        for _ in range(rounds):  # reads at the same time as the child's appends
            assert [m.content for m in store.history("parent")] == ["m0"]
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert [m.content for m in store.get("child").messages] == [f"m{i}" for i in range(rounds)]
