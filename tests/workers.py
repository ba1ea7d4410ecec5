"""Work run in child processes by the concurrency tests (importable, for multiprocessing)."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from sqlsessions import AsyncStore, ConflictError, Role, Store, StoreConfig
from store_fixtures import BlockingAsyncStore


def open_store(url: str, kind: str, **options: Any) -> Any:
    config = StoreConfig(url=url, **options)
    if kind == "sync":
        return Store(config)
    return BlockingAsyncStore(AsyncStore(config), asyncio.new_event_loop())


def append_many(url: str, kind: str, session_id: str, worker: int, count: int) -> int:
    """Append `count` messages tagged with the worker number; returns how many landed."""
    store = open_store(url, kind)
    try:
        for i in range(count):
            store.append(session_id, {"role": "user", "content": f"w{worker}-{i}"})
        return count
    finally:
        store.close()


def load_add_save(url: str, kind: str, session_id: str, worker: int, attempts: int) -> list[str]:
    """Load, add one message, save, `attempts` times; returns the contents that landed."""
    store = open_store(url, kind)
    landed: list[str] = []
    try:
        for i in range(attempts):
            store.clear_cache() if random.random() < 0.3 else None
            session = store.get(session_id)
            content = f"w{worker}-{i}"
            session.add_message(Role.USER, content)
            time.sleep(random.random() / 500)
            try:
                store.save(session)
            except ConflictError:
                continue
            landed.append(content)
        return landed
    finally:
        store.close()


def reap_all(url: str, kind: str, batch_size: int) -> int:
    store = open_store(url, kind)
    try:
        return int(store.reap_expired(batch_size=batch_size))
    finally:
        store.close()


def touch_live(url: str, kind: str, session_ids: list[str], rounds: int) -> int:
    """Touch and save live sessions while reapers run; returns the number of writes."""
    store = open_store(url, kind, ttl=3600)
    writes = 0
    try:
        for _ in range(rounds):
            for session_id in session_ids:
                store.touch(session_id)
                writes += 1
        return writes
    finally:
        store.close()
