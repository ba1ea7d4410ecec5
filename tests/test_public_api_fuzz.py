"""Fuzzing the public API with Hypothesis: whatever the arguments, only SqlSessionsError
subclasses escape (InvalidInputError when the input is at fault), never OverflowError,
UnicodeEncodeError, RecursionError, TypeError, alembic's CommandError or a driver error."""

from __future__ import annotations

import base64
import contextlib
import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqlsessions import (
    InvalidInputError,
    Message,
    Session,
    SqlSessionsError,
    StoreConfig,
    ToolCall,
    ToolFunction,
)
from sqlsessions.migrate import downgrade, migrate

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

OFFSETS = st.sampled_from(
    [timezone.utc, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12, minutes=-59))]
)
EXTREME_INTEGERS = st.sampled_from([0, -1, 2**31, 2**63 - 1, 2**63, 2**64, 10**400, -(2**63) - 1])
NASTY_TEXT = st.sampled_from(["", "\x00", "\ud800", "a\udcffb", "x" * 300, "é✓🙂", "' OR 1=1"])
TIMESTAMPS = st.one_of(
    st.datetimes(timezones=st.none() | OFFSETS),
    st.sampled_from(
        [
            datetime.min,
            datetime.max,
            datetime.min.replace(tzinfo=timezone(timedelta(hours=5))),
            datetime.max.replace(tzinfo=timezone(timedelta(hours=-5))),
        ]
    ),
)


class Deep(list):  # type: ignore[type-arg]
    """A deeply nested list that prints short (Hypothesis prints failing examples)."""

    def __repr__(self) -> str:
        return f"Deep(depth={self.depth})"

    depth = 0


def deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth - 1):
        value = [value]
    result = Deep([value])
    result.depth = depth
    return result


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    EXTREME_INTEGERS,
    st.floats(),
    st.text(),
    NASTY_TEXT,
    st.binary(max_size=8),
    TIMESTAMPS,
    st.timedeltas(),
    st.builds(deep, st.sampled_from([101, 3000])),  # built lazily: too deep to print
    st.sampled_from([object(), {1: 2}, {"k": float("nan")}, [b"x"]]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)


def cursor_text(payload: bytes) -> str:
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def json_or_empty(value: Any) -> bytes:
    try:
        return json.dumps(value, default=str).encode("utf-8", "surrogatepass")
    except (ValueError, RecursionError):
        return b""


CURSORS = st.one_of(
    VALUES,
    st.builds(lambda v: cursor_text(json_or_empty(v)), VALUES),
    st.builds(
        lambda stamp, sid: cursor_text(json_or_empty([stamp, sid])),
        st.sampled_from(["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "nope"]),
        NASTY_TEXT,
    ),
    st.just(cursor_text(b"[" * 100_000)),
    st.just(cursor_text(b"\xff\xfe\x00")),
)


def only_ours(action: Any, *args: Any, **kwargs: Any) -> Any:
    """Run `action`; any exception must be a SqlSessionsError subclass."""
    try:
        return action(*args, **kwargs)
    except SqlSessionsError:
        return None
    except BaseException as exc:  # the assertion under test
        pytest.fail(f"{type(exc).__name__} escaped: {exc!r}"[:500])


@FUZZ
@given(name=st.sampled_from(["get", "get_if_exists", "delete", "touch"]), session_id=VALUES)
def test_session_id_methods_raise_only_our_errors(store: Any, name: str, session_id: Any) -> None:
    only_ours(getattr(store, name), session_id)


@FUZZ
@given(session_id=VALUES | st.just("fuzz"), messages=st.lists(VALUES, max_size=3))
def test_append_raises_only_our_errors(store: Any, session_id: Any, messages: list[Any]) -> None:
    only_ours(store.append, session_id, *messages)


@FUZZ
@given(
    message=st.fixed_dictionaries(
        {"role": VALUES | st.sampled_from(["user", "tool"])},
        optional={"content": VALUES, "name": VALUES, "tool_call_id": VALUES, "tool_calls": VALUES},
    )
)
def test_append_of_message_documents_raises_only_our_errors(
    store: Any, message: dict[str, Any]
) -> None:
    only_ours(store.append, "fuzz", message)


@FUZZ
@given(session_id=VALUES | st.just("fuzz"), limit=VALUES | EXTREME_INTEGERS)
def test_history_raises_only_our_errors(store: Any, session_id: Any, limit: Any) -> None:
    store.append("fuzz", {"role": "user", "content": "x"})
    only_ours(store.history, session_id, limit)


@FUZZ
@given(
    agent_id=VALUES,
    metadata=VALUES,
    after=VALUES | TIMESTAMPS,
    before=VALUES | TIMESTAMPS,
    limit=VALUES | EXTREME_INTEGERS,
    cursor=CURSORS,
)
def test_list_sessions_raises_only_our_errors(
    store: Any, agent_id: Any, metadata: Any, after: Any, before: Any, limit: Any, cursor: Any
) -> None:
    only_ours(
        store.list_sessions,
        agent_id=agent_id,
        metadata=metadata,
        updated_after=after,
        updated_before=before,
        limit=limit,
        cursor=cursor,
    )


@FUZZ
@given(batch_size=VALUES | EXTREME_INTEGERS)
def test_reap_expired_raises_only_our_errors(store: Any, batch_size: Any) -> None:
    only_ours(store.reap_expired, batch_size)


@FUZZ
@given(interval=VALUES | EXTREME_INTEGERS, batch_size=VALUES | EXTREME_INTEGERS)
def test_start_reaper_rejects_bad_settings_with_our_errors(
    store: Any, interval: Any, batch_size: Any
) -> None:
    if hasattr(store, "async_store"):  # AsyncStore.start_reaper needs a running event loop

        async def start_and_stop() -> None:
            handle = only_ours(store.async_store.start_reaper, interval, batch_size)
            if handle is not None:
                await handle.stop()

        store.run(start_and_stop())
        return
    handle = only_ours(store.start_reaper, interval, batch_size)
    if handle is not None:
        handle.stop()


@FUZZ
@given(
    fields=st.fixed_dictionaries(
        {},
        optional={
            "agent_id": VALUES,
            "created_at": VALUES | TIMESTAMPS,
            "updated_at": VALUES | TIMESTAMPS,
            "metadata": VALUES,
        },
    ),
    assigned=st.sampled_from(["agent_id", "created_at", "updated_at", "metadata", "messages"]),
    value=VALUES | TIMESTAMPS,
)
def test_saving_sessions_raises_only_our_errors(
    store: Any, fields: dict[str, Any], assigned: str, value: Any
) -> None:
    session = only_ours(Session, id="fuzz-save", **fields)
    if session is None:
        return
    only_ours(store.save, session)
    store.delete("fuzz-save")
    loaded = only_ours(store.get, "fuzz-save")
    if loaded is not None:
        setattr(loaded, assigned, value)  # assignment is not validated: save checks it
        only_ours(store.save, loaded)
        store.delete("fuzz-save")


@FUZZ
@given(
    message=st.fixed_dictionaries(
        {"role": VALUES | st.sampled_from(["user", "assistant"])},
        optional={"content": VALUES, "name": VALUES, "tool_call_id": VALUES, "tool_calls": VALUES},
    ),
    call=st.fixed_dictionaries({"id": VALUES}, optional={"type": VALUES, "function": VALUES}),
    function=st.fixed_dictionaries({"name": VALUES, "arguments": VALUES}),
    session=st.fixed_dictionaries(
        {"id": VALUES},
        optional={
            "agent_id": VALUES,
            "messages": VALUES,
            "created_at": VALUES | TIMESTAMPS,
            "updated_at": VALUES | TIMESTAMPS,
            "metadata": VALUES,
        },
    ),
    document=st.text() | st.binary() | VALUES,
)
def test_model_constructors_raise_only_invalid_input(
    message: dict[str, Any],
    call: dict[str, Any],
    function: dict[str, Any],
    session: dict[str, Any],
    document: Any,
) -> None:
    # Anything but InvalidInputError escaping fails the test.
    for model, data in ((Message, message), (ToolCall, call), (ToolFunction, function)):
        with contextlib.suppress(InvalidInputError):
            model(**data)
        with contextlib.suppress(InvalidInputError):
            model.model_validate(data)
    with contextlib.suppress(InvalidInputError):
        Session.from_json(Session(**session).to_json())
    for text in (document, json_or_empty(session)):
        with contextlib.suppress(InvalidInputError):
            Session.from_json(text)


@FUZZ
@given(
    options=st.fixed_dictionaries(
        {},
        optional={
            "url": VALUES | st.sampled_from(["sqlite:///x.db", "mysql://x", "postgresql://a:b@"]),
            "ttl": VALUES | EXTREME_INTEGERS,
            "schema": VALUES,
            "auto_migrate": VALUES,
            "cache_size": VALUES | EXTREME_INTEGERS,
            "engine_options": VALUES,
        },
    )
)
def test_store_config_raises_only_invalid_input(options: dict[str, Any]) -> None:
    with contextlib.suppress(InvalidInputError):
        StoreConfig(**options)


@pytest.fixture(scope="module")
def scratch_sqlite(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{Path(tmp_path_factory.mktemp('fuzz')) / 'migrations.db'}"


@FUZZ
@given(
    revision=VALUES | st.sampled_from(["9999", "base:head", "-1", "+1", "0001@head", "heads"]),
    schema=VALUES | st.none(),
    url=st.none() | VALUES,
)
def test_migrate_and_downgrade_raise_only_our_errors(
    scratch_sqlite: str, revision: Any, schema: Any, url: Any
) -> None:
    target = scratch_sqlite if url is None else url
    only_ours(migrate, target, revision, schema=schema)
    only_ours(downgrade, target, revision, schema=schema)
    only_ours(migrate, scratch_sqlite)  # back at head for the next example


def test_the_recursion_limit_is_untouched() -> None:
    assert sys.getrecursionlimit() >= 1000
