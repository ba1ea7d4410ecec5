"""Bad input: every invalid argument raises InvalidInputError naming the field, and the stored
data is exactly as it was (checked by reloading through a fresh store and counting rows)."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from functools import partial
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from sqlsessions import (
    InvalidInputError,
    Message,
    Role,
    Session,
    StoreConfig,
    ToolCall,
    ToolFunction,
)

SEEDED = "seeded"


def call(i: int) -> ToolCall:
    return ToolCall(id=f"c{i}", function=ToolFunction(name="lookup", arguments='{"q": 1}'))


class Snapshot:
    """Everything stored, as a fresh store reads it and as rows in the tables."""

    def __init__(self, url: str, open_store: Any) -> None:
        self.url = url
        self.reader = open_store()

    def take(self) -> dict[str, Any]:
        self.reader.clear_cache()
        ids = sorted(self.reader.list())
        sessions = {sid: self.reader.get_if_exists(sid).model_dump() for sid in ids}
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                rows = {
                    table: conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
                    for table in ("sessions", "messages", "tool_calls", "session_metadata")
                }
                versions = dict(conn.execute(text("SELECT id, version FROM sessions")).all())
        finally:
            engine.dispose()
        return {"ids": ids, "sessions": sessions, "rows": rows, "versions": versions}


@pytest.fixture
def seeded(store: Any, open_store: Any, migrated_url: str) -> Callable[[], None]:
    """A stored session with messages, tool calls and metadata; call the fixture's value to
    assert that nothing stored has changed since."""
    session = store.get(SEEDED)
    session.agent_id = "agent"
    session.add_message(Role.SYSTEM, "be brief")
    session.add_message_with_tool_calls(Role.ASSISTANT, "", [call(1), call(2)])
    session.add_tool_result("c1", "result")
    session.set_metadata("channel", "slack")
    session.set_metadata("nested", {"a": [1, 2.5, None, True]})
    store.save(session)
    snapshot = Snapshot(migrated_url, open_store)
    before = snapshot.take()

    def unchanged() -> None:
        assert snapshot.take() == before

    return unchanged


def rejects(field: str, action: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Assert that `action(*args, **kwargs)` raises InvalidInputError for exactly `field`."""
    with pytest.raises(InvalidInputError) as caught:
        action(*args, **kwargs)
    assert caught.value.field == field, str(caught.value)
    assert field in str(caught.value)


def start_reaper(store: Any, **options: Any) -> None:
    """store.start_reaper(**options) on either facade; a handle that starts is stopped again."""
    if hasattr(store, "async_store"):

        async def start() -> None:
            handle = store.async_store.start_reaper(**options)
            await handle.stop()

        store._loop.run_until_complete(start())
        return
    store.start_reaper(**options).stop()


# --- session ids -----------------------------------------------------------------------------

BAD_IDS: list[Any] = [
    "",
    "x" * 256,
    "\U0001f600" * 256,
    "nul\x00id",
    "lone\ud800surrogate",
    42,
    None,
    b"bytes",
    ["list"],
]


def test_bad_session_ids_are_rejected_by_every_operation_naming_the_field(
    store: Any, seeded: Callable[[], None]
) -> None:
    for bad in BAD_IDS:
        for action in (
            partial(store.get, bad),
            partial(store.get_if_exists, bad),
            partial(store.delete, bad),
            partial(store.touch, bad),
            partial(store.append, bad, Message(role=Role.USER, content="x")),
            partial(store.history, bad),
        ):
            rejects("session_id", action)
        rejects("id", Session, id=bad)
        rejects("id", Session.new, bad)
        session = store.get(SEEDED)
        session.id = bad  # a mutable model: the save checks the id again
        session.add_message(Role.USER, "never stored")
        rejects("session_id", store.save, session)
    for not_a_session in ({"id": "x"}, "x", None):
        rejects("session", store.save, not_a_session)
    seeded()


def test_ids_at_the_length_limit_are_accepted_on_every_dialect(store: Any, open_store: Any) -> None:
    for sid in ("x" * 255, "\U0001f600" * 255, "é" * 255):
        session = store.get(sid)
        session.add_message(Role.USER, "fits")
        store.save(session)
        assert open_store().get_if_exists(sid).messages == session.messages


# --- roles -----------------------------------------------------------------------------------


def test_unknown_roles_are_rejected_naming_the_role_field(
    store: Any, seeded: Callable[[], None]
) -> None:
    for bad in ("wizard", "USER", "", None, 3):
        rejects("role", Message, role=bad, content="x")
        rejects("messages[0].role", store.append, SEEDED, {"role": bad})
        rejects(
            "messages[1].role",
            Session,
            id="s",
            messages=[{"role": "user"}, {"role": bad, "content": "x"}],
        )
    session = store.get(SEEDED)
    before = session.model_dump()
    rejects("role", session.add_message, "wizard", "x")
    rejects("role", session.add_message_with_tool_calls, "robot", "x", [call(3)])
    assert session.model_dump() == before  # nothing appended, updated_at not bumped
    document = json.dumps({"id": "j", "messages": [{"role": "wizard", "content": "x"}]})
    rejects("messages[0].role", Session.from_json, document)
    seeded()


# --- metadata --------------------------------------------------------------------------------


class NotJson:
    pass


NON_JSON_VALUES: list[Any] = [
    NotJson(),
    {1, 2},
    b"bytes",
    datetime(2026, 1, 1, tzinfo=timezone.utc),
    Decimal("1.5"),
    1 + 2j,
    float("nan"),
    float("inf"),
    float("-inf"),
    [1, float("nan")],
    {"deep": {"er": float("inf")}},
    {"k": NotJson()},
]


def test_metadata_values_that_are_not_json_are_rejected_naming_the_key(
    store: Any, seeded: Callable[[], None]
) -> None:
    for bad in NON_JSON_VALUES:
        session = store.get(SEEDED)
        before = session.model_dump()
        rejects("metadata[key]", session.set_metadata, "key", bad)
        assert session.model_dump() == before
        session.metadata["key"] = bad  # a plain dict: the save validates it again
        rejects("metadata[key]", store.save, session)
        rejects("metadata[key]", Session, id="s", metadata={"key": bad})
    for bad in (float("nan"), NotJson(), {"a": float("inf")}):
        rejects("metadata[key]", store.list_sessions, metadata={"key": bad})
    rejects("metadata", store.list_sessions, metadata="channel=slack")
    for bad_key in ("", 1, None, "nul\x00key"):
        session = store.get(SEEDED)
        rejects("metadata key", session.set_metadata, bad_key, 1)
        session.metadata[bad_key] = 1
        rejects("metadata key", store.save, session)
        rejects("metadata key", Session, id="s", metadata={bad_key: 1})
    seeded()


# --- tool calls ------------------------------------------------------------------------------


def test_tool_calls_with_non_string_arguments_are_rejected_naming_the_field(
    store: Any, seeded: Callable[[], None]
) -> None:
    for bad in ({"q": 1}, ["q"], 1, None, True):
        rejects("arguments", ToolFunction, name="f", arguments=bad)
        rejects(
            "function.arguments",
            ToolCall,
            id="c",
            function={"name": "f", "arguments": bad},
        )
        message = {
            "role": "assistant",
            "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": bad}}],
        }
        rejects(
            "messages[0].tool_calls[0].function.arguments",
            store.append,
            SEEDED,
            message,
        )
        document = json.dumps({"id": "j", "messages": [message]})
        rejects(
            "messages[0].tool_calls[0].function.arguments",
            Session.from_json,
            document,
        )
    rejects("arguments", ToolFunction, name="f", arguments=b"{}")
    rejects("name", ToolFunction, name=7, arguments="{}")
    rejects("id", ToolCall, id=7, function=ToolFunction(name="f", arguments="{}"))
    seeded()


# --- NUL characters and lone surrogates ------------------------------------------------------

UNSTORABLE = ["a\x00b", "a\ud800b", "a\udfffb"]
"""A NUL (PostgreSQL text cannot hold it: rejected by design) and lone surrogates (not UTF-8)."""


def test_unstorable_text_is_rejected_wherever_text_goes(
    store: Any, seeded: Callable[[], None]
) -> None:
    for bad in UNSTORABLE:
        session = store.get(SEEDED)
        before = session.model_dump()
        bad_call = {"id": bad, "function": {"name": "f", "arguments": "{}"}}
        bad_type = {"id": "c", "type": bad, "function": {"name": "f", "arguments": "{}"}}
        for field, action in (
            ("content", partial(session.add_message, Role.USER, bad)),
            ("content", partial(session.add_tool_result, "c1", bad)),
            ("tool_call_id", partial(session.add_tool_result, bad, "x")),
            ("name", partial(Message, role=Role.TOOL, content="x", name=bad)),
            ("tool_calls[0].id", partial(Message, role=Role.ASSISTANT, tool_calls=[bad_call])),
            ("tool_calls[0].type", partial(Message, role=Role.ASSISTANT, tool_calls=[bad_type])),
            ("arguments", partial(ToolFunction, name="f", arguments=bad)),
            ("name", partial(ToolFunction, name=bad, arguments="{}")),
            ("metadata key", partial(session.set_metadata, bad, 1)),
            ("metadata[k]", partial(session.set_metadata, "k", bad)),
            ("metadata[k]", partial(session.set_metadata, "k", {"deep": [bad]})),
            ("metadata[k]", partial(session.set_metadata, "k", {bad: "as a nested key"})),
            ("agent_id", partial(Session, id="s", agent_id=bad)),
            (
                "messages[0].content",
                partial(store.append, SEEDED, {"role": "user", "content": bad}),
            ),
            ("session_id", partial(store.get, bad)),
        ):
            rejects(field, action)
        assert session.model_dump() == before
    for bad in ("a\x00b", ["a\x00b"], {"k\x00": 1}):  # assigned directly: the save checks
        session = store.get(SEEDED)
        session.metadata["k"] = bad
        rejects("metadata[k]", store.save, session)
    seeded()


def test_json_documents_with_unstorable_text_or_invalid_utf8_are_rejected() -> None:
    rejects("id", Session.from_json, '{"id": "a\\u0000b"}')
    nul_content = '{"id": "s", "messages": [{"role": "user", "content": "\\u0000"}]}'
    rejects("messages[0].content", Session.from_json, nul_content)
    with pytest.raises(InvalidInputError):
        Session.from_json('{"id": "s", "messages": [{"role": "user", "content": "\\ud800"}]}')
    with pytest.raises(InvalidInputError):
        Session.from_json(b'{"id": "\xff\xfe"}')
    rejects("json", Session.from_json, "not json")
    rejects("json", Session.from_json, "")
    rejects("id", Session.from_json, '{"messages": []}')
    rejects("created_at", Session.from_json, '{"id": "s", "created_at": "yesterday"}')


# --- limits, cursors, filters and the reaper -------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


BAD_CURSORS: list[Any] = [
    "garbage!",
    "é",
    "a",
    _b64(b"not json"),
    _b64(b"[]"),
    _b64(b"[1]"),
    _b64(b'{"a": 1}'),
    _b64(b'[null, "x"]'),
    _b64(b'["yesterday", "x"]'),
    _b64(b"[1, 2, 3]"),
    _b64(b"\xff\xfe"),
    123,
]


def test_bad_limits_cursors_filters_and_reaper_settings_are_rejected_naming_the_argument(
    store: Any, seeded: Callable[[], None]
) -> None:
    for bad in (0, -1, -(10**9), True, "5", 1.5, None):
        rejects("limit", store.history, SEEDED, limit=bad)
    for bad in (0, -1, 1001, True, "10", 2.0, None):
        rejects("limit", store.list_sessions, limit=bad)
    for bad in BAD_CURSORS:
        rejects("cursor", store.list_sessions, cursor=bad)
    rejects("agent_id", store.list_sessions, agent_id=5)
    rejects("updated_after", store.list_sessions, updated_after="2026-01-01")
    rejects("updated_before", store.list_sessions, updated_before=1.5)
    for bad in (0, -1, 1.5, True, "10", None):
        rejects("batch_size", store.reap_expired, batch_size=bad)
    for bad in (0, -1, -0.5, True, "1", None):
        rejects("interval", start_reaper, store, interval=bad)
    seeded()


# --- in memory: trim, configuration ------------------------------------------------------------


def test_trim_rejects_negative_or_non_integer_counts_and_changes_nothing() -> None:
    session = Session.new("s")
    session.add_message(Role.USER, "kept")
    before = session.model_dump()
    for bad in (-1, 1.5, "2", None, True):
        rejects("n", session.trim, bad)
    assert session.model_dump() == before


def test_store_config_rejects_a_ttl_that_is_not_positive() -> None:
    for bad in (0, -1, 0.0, timedelta(0), timedelta(seconds=-1), "7d", True, [], {"days": 7}):
        rejects("ttl", StoreConfig, url="sqlite:///sessions.db", ttl=bad)


def test_store_config_rejects_bad_urls_and_schema_names() -> None:
    for bad in ("not a url", "mysql://u@h/db", "", "oracle://scott:tiger@h/db"):
        rejects("url", StoreConfig, url=bad)
    for bad in ("agents; DROP TABLE sessions", "a-b", "", "1abc", '"quoted"'):
        rejects("schema", StoreConfig, url="sqlite:///x.db", schema=bad)


# --- fields assigned directly, filters, reaper and TTL edge cases -----------------------------
# Each was once a bug (found by this file, now fixed). They run once per dialect on a sync
# Store: the facades share the validation under test.


@pytest.fixture
def dialect_store(migrated_url: str) -> Any:
    """A sync Store with a seeded session on the test database."""
    from sqlsessions import Store

    with Store(StoreConfig(url=migrated_url)) as store:
        session = store.get(SEEDED)
        session.add_message(Role.USER, "hello")
        session.set_metadata("channel", "slack")
        store.save(session)
        yield store


def assert_seed_intact(store: Any) -> None:
    store.clear_cache()
    seeded = store.get_if_exists(SEEDED)
    assert [m.content for m in seeded.messages] == ["hello"]
    assert seeded.metadata == {"channel": "slack"}
    assert seeded.agent_id == ""


def test_an_overlong_or_non_string_agent_id_is_rejected_naming_the_field(
    dialect_store: Any,
) -> None:
    rejects("agent_id", Session, id="s", agent_id="x" * 256)
    for bad in ("x" * 256, 42, None):
        session = dialect_store.get(SEEDED)
        session.agent_id = bad
        rejects("agent_id", dialect_store.save, session)
    assert_seed_intact(dialect_store)


def test_a_bad_timestamp_assigned_to_a_session_is_rejected_on_save(dialect_store: Any) -> None:
    for field in ("updated_at", "created_at"):
        session = dialect_store.get(SEEDED)
        setattr(session, field, "yesterday")
        rejects(field, dialect_store.save, session)
    assert_seed_intact(dialect_store)


def _deeply_nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("key", "value"),
    [
        pytest.param("k", "a\ud800b", id="surrogate-value"),
        pytest.param("k", {"a\udfff": 1}, id="surrogate-nested-key"),
        pytest.param("k\ud800", 1, id="surrogate-key"),
        pytest.param("k", _deeply_nested(100_000), id="deeply-nested"),
        pytest.param("k", {1: "int key"}, id="int-nested-key"),
    ],
)
def test_metadata_assigned_directly_is_validated_on_save_like_set_metadata(
    dialect_store: Any, key: str, value: Any
) -> None:
    session = dialect_store.get(SEEDED)
    session.metadata[key] = value
    with pytest.raises(InvalidInputError) as caught:
        dialect_store.save(session)
    assert caught.value.field in (f"metadata[{key}]", "metadata key")
    assert_seed_intact(dialect_store)


@pytest.mark.parametrize(
    "filters",
    [
        pytest.param({"agent_id": "a\x00b"}, id="nul-agent"),
        pytest.param({"agent_id": "a\ud800"}, id="surrogate-agent"),
        pytest.param({"metadata": {"k\ud800": 1}}, id="surrogate-key"),
        pytest.param({"metadata": {"k": "\ud800"}}, id="surrogate-value"),
    ],
)
def test_list_sessions_rejects_unstorable_text_in_its_filters(
    dialect_store: Any, filters: dict[str, Any]
) -> None:
    with pytest.raises(InvalidInputError):
        dialect_store.list_sessions(**filters)


def test_text_that_merely_looks_like_an_escaped_nul_is_stored(dialect_store: Any) -> None:
    session = dialect_store.get("windows-path")
    session.set_metadata("path", "C:\\u0000\\file")  # accepted in memory
    dialect_store.save(session)
    dialect_store.clear_cache()
    assert dialect_store.get_if_exists("windows-path").metadata == {"path": "C:\\u0000\\file"}


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_the_reaper_rejects_a_non_finite_interval(dialect_store: Any, bad: float) -> None:
    rejects("interval", start_reaper, dialect_store, interval=bad)


def test_start_reaper_rejects_a_bad_batch_size_before_starting(dialect_store: Any) -> None:
    rejects("batch_size", start_reaper, dialect_store, interval=60, batch_size=0)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(math.nan, id="nan"),
        pytest.param(math.inf, id="inf"),
        pytest.param(timedelta.max, id="timedelta.max"),
        pytest.param(10**15, id="1e15-seconds"),
    ],
)
def test_store_config_rejects_a_ttl_that_cannot_be_represented(bad: Any) -> None:
    rejects("ttl", StoreConfig, url="sqlite:///sessions.db", ttl=bad)


# --- out-of-range values: never OverflowError, UnicodeEncodeError or RecursionError -----------


def forged_cursor(payload: bytes) -> str:
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


FORGED_CURSORS = [
    forged_cursor(
        json.dumps(["2026-01-01T00:00:00+00:00", "\ud800"]).encode("utf-8", "surrogatepass")
    ),
    forged_cursor(b'["2026-01-01T00:00:00+00:00", "\\ud800"]'),  # a lone surrogate, escaped
    forged_cursor(b"[" * 100_000),  # deeper than the JSON parser recurses
    forged_cursor(json.dumps(["0001-01-01T00:00:00+05:00", "x"]).encode()),  # before year 1 in UTC
    forged_cursor(json.dumps(["2026-01-01T00:00:00", "x"]).encode()),  # no offset: not ours
    forged_cursor(json.dumps(["2026-01-01T00:00:00+00:00", 7]).encode()),
    "A" * 100_000,
]


def test_out_of_range_numbers_forged_cursors_and_edge_timestamps_are_invalid_input(
    store: Any, seeded: Callable[[], None]
) -> None:
    for bad in (2**63, 2**64, 10**400, 1_000_001):
        rejects("batch_size", store.reap_expired, batch_size=bad)
        rejects("batch_size", start_reaper, store, batch_size=bad)
    for bad in (2**31, 2**63, 10**400):
        rejects("limit", store.history, SEEDED, limit=bad)
        rejects("interval", start_reaper, store, interval=bad)
    for bad in FORGED_CURSORS:
        rejects("cursor", store.list_sessions, cursor=bad)
    edge = datetime.min.replace(tzinfo=timezone(timedelta(hours=5)))
    rejects("updated_after", store.list_sessions, updated_after=edge)
    rejects("updated_before", store.list_sessions, updated_before=edge)
    session = store.get(SEEDED)
    session.created_at = edge  # assigned directly: only save can check it
    rejects("created_at", store.save, session)
    seeded()


def test_store_config_rejects_out_of_range_and_mistyped_settings_naming_them() -> None:
    rejects("ttl", StoreConfig, ttl=10**400)
    rejects("schema", StoreConfig, schema=5)
    rejects("engine_options", StoreConfig, engine_options=["pool_size", 5])
    rejects("auto_migrate", StoreConfig, auto_migrate="yes")
