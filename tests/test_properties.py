"""Property tests (Hypothesis): any valid session survives JSON and the database unchanged, and
any sequence of store operations leaves the store agreeing with an in-memory model."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqlsessions import (
    ConflictError,
    Message,
    Role,
    Session,
    SessionNotFoundError,
    ToolCall,
    ToolFunction,
)

STORE_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    # The store fixture is reused by every example; each example uses new session ids.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
_ids = itertools.count()


def fresh_prefix() -> str:
    return f"p{next(_ids)}:"


# --- strategies ------------------------------------------------------------------------------

# Any Unicode scalar value except NUL (rejected by design: PostgreSQL text cannot hold it);
# surrogates are not scalar values (excluded by the utf-8 codec). Astral planes, combining
# marks, RTL, control characters and SQL/format metacharacters are drawn on purpose.
characters = st.one_of(
    st.characters(codec="utf-8", exclude_characters="\x00"),
    st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF, codec="utf-8"),
    st.sampled_from("'\";\\%?:$`\r\n\t\u0301\u200f\ufeff\U0001f600\U0010ffff"),
)
texts = st.text(characters, max_size=40)
non_empty_texts = st.text(characters, min_size=1, max_size=20)

timestamps = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.just(timezone.utc),
)

tool_calls = st.builds(
    ToolCall,
    id=texts,
    type=st.one_of(st.just("function"), texts),
    function=st.builds(ToolFunction, name=texts, arguments=texts),
)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    role = draw(st.sampled_from(list(Role)))
    calls = draw(st.lists(tool_calls, max_size=12)) if role is Role.ASSISTANT else []
    return Message(
        role=role,
        content=draw(texts),
        name=draw(st.one_of(st.none(), texts)),
        tool_call_id=draw(st.one_of(st.none(), texts)) if role is Role.TOOL else None,
        tool_calls=calls,
    )


def json_values(numbers: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Every JSON type, nested: null, booleans, numbers, strings, arrays, objects."""
    return st.recursive(
        st.none() | st.booleans() | numbers | texts,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4)
        ),
        max_leaves=12,
    )


# Every JSON number: any int, any finite float (NaN and infinities are not JSON).
any_numbers = st.integers() | st.floats(allow_nan=False, allow_infinity=False)

# Numbers the store keeps exactly, with their type, on both dialects: PostgreSQL's JSONB
# stores exact decimals, so a float of magnitude >= 1e16 comes back as an int (documented;
# see test_metadata_numbers_keep_their_value_and_type_through_the_store).
stored_numbers = st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.floats(
    allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15
).filter(lambda f: not f.is_integer())


@st.composite
def sessions(draw: st.DrawFn, numbers: st.SearchStrategy[Any] = any_numbers) -> Session:
    created = draw(timestamps)
    return Session(
        id=draw(st.text(characters, min_size=1, max_size=60)),
        agent_id=draw(texts),
        messages=draw(st.lists(messages(), max_size=8)),
        created_at=created,
        updated_at=draw(st.one_of(st.just(created), timestamps)),
        metadata=draw(st.dictionaries(non_empty_texts, json_values(numbers), max_size=6)),
    )


def strict_json(value: Any) -> str:
    """JSON text that tells 1 from 1.0 and true (Python's == does not)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def assert_same_session(actual: Session, expected: Session) -> None:
    assert actual.model_dump() == expected.model_dump()
    assert strict_json(actual.metadata) == strict_json(expected.metadata)
    # Metadata keys may come back in another order (a JSON object is unordered).
    assert strict_json(json.loads(actual.to_json())) == strict_json(json.loads(expected.to_json()))


# --- round trips -----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(session=sessions())
def test_any_valid_session_survives_to_json_and_from_json_unchanged(session: Session) -> None:
    document = session.to_json()
    loaded = Session.from_json(document)
    assert_same_session(loaded, session)
    assert loaded.to_json() == document  # in memory, even the key order is kept
    assert Session.model_validate_json(session.model_dump_json()).model_dump() == (
        session.model_dump()
    )


@pytest.fixture
def reader(open_store: Any) -> Any:
    """A second store on the same database, read with a cleared cache."""
    return open_store()


@STORE_SETTINGS
@given(session=sessions(numbers=stored_numbers))
def test_any_valid_session_survives_save_and_load_unchanged(
    store: Any, reader: Any, session: Session
) -> None:
    session.id = (fresh_prefix() + session.id)[:255]
    expected = session.model_copy(deep=True)
    store.save(session)
    reader.clear_cache()
    assert_same_session(reader.get_if_exists(session.id), expected)
    assert_same_session(store.get(session.id), expected)  # through the cache
    assert reader.history(session.id, limit=len(expected.messages) + 1) == _without_orphans(
        expected.messages
    )


def _without_orphans(messages: list[Message]) -> list[Message]:
    """What history() returns for a whole session: no leading tool results without a call."""
    start = 0
    while start < len(messages) and messages[start].role is Role.TOOL:
        start += 1
    return messages[start:]


def test_a_one_megabyte_astral_message_survives_save_and_load(store: Any, reader: Any) -> None:
    unit = "a\U0001f600é€\U0010fffd\u0301\n'\";"  # 1 to 4 UTF-8 bytes per character
    content = unit * (2**20 // len(unit.encode()) + 1)
    assert len(content.encode()) >= 2**20
    session = store.get("huge")
    session.add_message(Role.USER, content)
    session.add_message_with_tool_calls(
        Role.ASSISTANT,
        "",
        [ToolCall(id="big", function=ToolFunction(name="f", arguments=json.dumps(content)))],
    )
    session.set_metadata("blob", {"text": content, "list": [content[:1000]] * 10})
    store.save(session)
    reader.clear_cache()
    loaded = reader.get_if_exists("huge")
    assert loaded.messages[0].content == content
    assert loaded.messages[1].tool_calls[0].function.arguments == json.dumps(content)
    assert loaded.metadata == session.metadata
    assert Session.from_json(loaded.to_json()).messages == session.messages


def test_metadata_numbers_keep_their_value_and_type_through_the_store(
    store: Any, reader: Any, db_variant: str
) -> None:
    values = {"whole_float": 2.0, "big_int": 2**64 + 1, "huge_float": 1e23, "minus_zero": -0.0}
    session = store.get("numbers")
    for key, value in values.items():
        session.set_metadata(key, value)
    store.save(session)
    reader.clear_cache()
    loaded = reader.get_if_exists("numbers").metadata
    if db_variant == "sqlite":  # JSON kept as text: every number exactly as written
        assert strict_json(loaded) == strict_json(values)
        assert math.copysign(1, loaded["minus_zero"]) == -1
    else:  # JSONB stores exact decimals: the documented normalisation (README, Schema)
        assert strict_json({k: loaded[k] for k in ("whole_float", "big_int")}) == strict_json(
            {"whole_float": 2.0, "big_int": 2**64 + 1}
        )
        assert loaded["huge_float"] == 10**23
        assert loaded["minus_zero"] == 0


# --- operations against an in-memory model ---------------------------------------------------


@dataclass
class Model:
    """What the store should hold: session id -> (messages, metadata)."""

    sessions: dict[str, tuple[list[Message], dict[str, Any]]] = field(default_factory=dict)

    def ensure(self, sid: str) -> tuple[list[Message], dict[str, Any]]:
        return self.sessions.setdefault(sid, ([], {}))


def model_history(messages: list[Message], limit: int) -> list[Message]:
    """history(): the last `limit` messages, widened back to the message before leading tool
    results, or without those results when nothing precedes them."""
    start = max(0, len(messages) - limit)
    while start < len(messages) and messages[start].role is Role.TOOL:
        caller = next(
            (i for i in range(start - 1, -1, -1) if messages[i].role is not Role.TOOL), None
        )
        if caller is None:
            start += 1  # an orphan tool result at the very start: dropped
        else:
            start = caller
    return messages[start:]


small_texts = st.text(characters, max_size=8)
small_messages = st.builds(
    lambda role, content, calls, call_id: Message(
        role=role,
        content=content,
        tool_calls=calls if role is Role.ASSISTANT else None,
        tool_call_id=call_id if role is Role.TOOL else None,
    ),
    st.sampled_from(list(Role)),
    small_texts,
    st.lists(tool_calls, max_size=2),
    small_texts,
)
slots = st.integers(min_value=0, max_value=2)
via = st.integers(min_value=0, max_value=1)
operations = st.one_of(
    st.tuples(st.just("append"), slots, via, st.lists(small_messages, min_size=1, max_size=3)),
    st.tuples(st.just("add_save"), slots, via, small_messages),
    st.tuples(st.just("trim_save"), slots, via, st.integers(min_value=0, max_value=5)),
    st.tuples(st.just("clear_save"), slots, via),
    st.tuples(
        st.just("metadata_set_save"),
        slots,
        via,
        st.sampled_from("abc"),
        json_values(stored_numbers),
    ),
    st.tuples(st.just("metadata_delete_save"), slots, via, st.sampled_from("abc")),
    st.tuples(st.just("edit_save"), slots, via, st.integers(min_value=0), small_texts),
    st.tuples(st.just("stale_save"), slots, via, small_messages),
    st.tuples(st.just("delete"), slots, via),
    st.tuples(st.just("touch"), slots, via),
    st.tuples(st.just("clear_cache"), slots, via),
)


def apply(op: tuple[Any, ...], stores: list[Any], model: Model, sid: str) -> None:
    """Run one operation on the store and on the model."""
    kind, _slot, index = op[:3]
    store, other = stores[index], stores[1 - index]
    if kind == "append":
        store.append(sid, *op[3])
        model.ensure(sid)[0].extend(op[3])
    elif kind == "delete":
        store.delete(sid)
        model.sessions.pop(sid, None)
    elif kind == "touch":
        if sid in model.sessions:
            store.touch(sid)
        else:
            with pytest.raises(SessionNotFoundError):
                store.touch(sid)
    elif kind == "clear_cache":
        store.clear_cache()
    elif kind == "stale_save":
        session = store.get(sid)
        model.ensure(sid)
        interloper = Message(role=Role.USER, content="interloper")
        other.append(sid, interloper)  # changes the stored version under `session`
        model.sessions[sid][0].append(interloper)
        session.add_message(op[3].role, op[3].content)
        with pytest.raises(ConflictError):
            store.save(session)
    else:
        session = store.get(sid)
        messages, metadata = model.ensure(sid)
        if kind == "add_save":
            session.messages.append(op[3])
            messages.append(op[3])
        elif kind == "trim_save":
            session.trim(op[3])
            del messages[: max(0, len(messages) - op[3])]
        elif kind == "clear_save":
            session.clear()
            messages.clear()
        elif kind == "metadata_set_save":
            session.set_metadata(op[3], op[4])
            metadata[op[3]] = op[4]
        elif kind == "metadata_delete_save":
            session.metadata.pop(op[3], None)
            metadata.pop(op[3], None)
        elif kind == "edit_save" and messages:
            position = op[3] % len(messages)
            session.messages[position] = session.messages[position].replace(content=op[4])
            messages[position] = messages[position].replace(content=op[4])
        store.save(session)


def check(stores: list[Any], model: Model, sid: str, limit: int) -> None:
    """Both stores (one with its cache, one without) read exactly what the model holds."""
    for store, clear in ((stores[0], False), (stores[1], True)):
        if clear:
            store.clear_cache()
        if sid not in model.sessions:
            with pytest.raises(SessionNotFoundError):
                store.get_if_exists(sid)
            with pytest.raises(SessionNotFoundError):
                store.history(sid)
            continue
        messages, metadata = model.sessions[sid]
        session = store.get_if_exists(sid)
        assert session.messages == messages
        assert strict_json(session.metadata) == strict_json(metadata)
        assert store.history(sid, limit=limit) == model_history(messages, limit)


@STORE_SETTINGS
@given(ops=st.lists(operations, min_size=1, max_size=20), limit=st.integers(1, 6))
def test_random_operation_sequences_agree_with_an_in_memory_model(
    store: Any, reader: Any, ops: list[tuple[Any, ...]], limit: int
) -> None:
    prefix = fresh_prefix()
    stores = [store, reader]
    model = Model()
    ids = [f"{prefix}{slot}" for slot in range(3)]
    try:
        for op in ops:
            sid = ids[op[1]]
            apply(op, stores, model, sid)
            check(stores, model, sid, limit)
        mine = sorted(sid for sid in store.list() if sid.startswith(prefix))
        assert mine == sorted(model.sessions)
        summaries = {
            summary.id: summary.message_count
            for summary in store.list_sessions(limit=1000).sessions
            if summary.id.startswith(prefix)
        }
        assert summaries == {sid: len(messages) for sid, (messages, _) in model.sessions.items()}
    finally:
        for sid in ids:
            store.delete(sid)
