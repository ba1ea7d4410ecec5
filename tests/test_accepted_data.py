"""Whatever the store accepts reads back through every path; what would not is rejected up front.

Paths: a fresh `Store`, an `AsyncStore` reading what the sync store saved, `to_json`/`from_json`,
`sqlsessions export` -> `import` into another database, and `sessions show`.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from typer.testing import CliRunner

from sqlsessions import AsyncStore, InvalidInputError, Role, Session, Store, StoreConfig
from sqlsessions.cli import app
from sqlsessions.schema import session_metadata
from sqlsessions.validation import MAX_JSON_DEPTH


def nested(depth: int, leaf: Any = "leaf") -> Any:
    """A JSON value `depth` levels deep, alternating objects and arrays."""
    value = leaf
    for level in range(depth):
        value = {"k": value} if level % 2 else [value, level]
    return value


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def load_async(url: str, session_id: str) -> Session:
    async def load() -> Session:
        async with AsyncStore(StoreConfig(url=url)) as store:
            return await store.get_if_exists(session_id)

    return asyncio.run(load())


def test_metadata_nested_to_the_limit_round_trips_through_every_path(
    migrated_url: str, tmp_path: Path
) -> None:
    deepest = nested(MAX_JSON_DEPTH)
    with Store(StoreConfig(url=migrated_url)) as store:
        session = store.get("deep")
        session.set_metadata("deep", deepest)
        session.set_metadata("wide", [nested(MAX_JSON_DEPTH - 1, leaf=i) for i in range(3)])
        session.add_message(Role.USER, "hello")
        store.save(session)
    with Store(StoreConfig(url=migrated_url)) as fresh:
        loaded = fresh.get_if_exists("deep")
    assert loaded.metadata["deep"] == deepest
    assert load_async(migrated_url, "deep").metadata == loaded.metadata
    assert Session.from_json(loaded.to_json()).metadata == loaded.metadata

    exported = cli("--url", migrated_url, "export", "-o", str(tmp_path / "out.jsonl"))
    assert exported.exit_code == 0, exported.output
    copy = f"sqlite:///{tmp_path / 'copy.db'}"
    imported = cli("--url", copy, "import", str(tmp_path / "out.jsonl"))
    assert imported.exit_code == 0, imported.output
    with Store(StoreConfig(url=copy)) as other:
        assert other.get_if_exists("deep").metadata == loaded.metadata

    shown = cli("--url", migrated_url, "sessions", "show", "deep")
    assert shown.exit_code == 0, shown.output
    assert "deep = " in shown.stdout and "leaf" in shown.stdout


def test_metadata_nested_past_the_limit_is_rejected_naming_the_field_on_every_path(
    store: Any,
) -> None:
    too_deep = nested(MAX_JSON_DEPTH + 1)
    session = store.get("s")
    with pytest.raises(InvalidInputError) as raised:
        session.set_metadata("deep", too_deep)
    assert raised.value.field == "metadata[deep]"
    assert f"more than {MAX_JSON_DEPTH} levels" in raised.value.reason
    with pytest.raises(InvalidInputError, match=r"metadata\[deep\]"):
        Session(id="x", metadata={"deep": too_deep})
    with pytest.raises(InvalidInputError, match=r"metadata\[deep\]"):
        Session.from_json(json.dumps({"id": "x", "metadata": {"deep": too_deep}}))
    session.metadata["deep"] = too_deep  # assigned directly: checked on save
    with pytest.raises(InvalidInputError, match=r"metadata\[deep\]"):
        store.save(session)
    with pytest.raises(InvalidInputError, match=r"metadata\[deep\]"):
        store.list_sessions(metadata={"deep": too_deep})
    store.clear_cache()
    assert store.get_if_exists("s").metadata == {}


def test_a_circular_metadata_value_is_rejected_not_a_recursion_error(store: Any) -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(InvalidInputError, match=r"metadata\[loop\]"):
        store.get("s").set_metadata("loop", loop)


def test_an_import_record_nested_past_the_limit_is_reported_and_the_rest_imported(
    migrated_url: str, tmp_path: Path
) -> None:
    lines = [
        json.dumps({"id": "ok-1"}),
        json.dumps({"id": "deep", "metadata": {"deep": nested(MAX_JSON_DEPTH + 1)}}),
        "[" * 5000 + "]" * 5000,  # deeper than Python's json can parse
        json.dumps({"id": "ok-2"}),
    ]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    result = cli("--url", migrated_url, "import", str(tmp_path / "in.jsonl"))
    assert result.exit_code == 1
    assert ":2: invalid metadata[deep]" in result.stderr
    assert ":3: not valid JSON: nested too deeply" in result.stderr
    assert "2 imported, 0 unchanged, 2 skipped" in result.stderr
    with Store(StoreConfig(url=migrated_url)) as store:
        assert store.list() == ["ok-1", "ok-2"]


def test_one_unreadable_session_does_not_block_the_export_of_the_others(
    migrated_url: str, db_schema: str | None, tmp_path: Path
) -> None:
    with Store(StoreConfig(url=migrated_url, schema=db_schema)) as store:
        for session_id in ("a", "broken", "c"):
            session = store.get(session_id)
            session.add_message(Role.USER, f"in {session_id}")
            store.save(session)
        # Metadata written before the depth limit existed (or by another program).
        with store.engine.begin() as conn:
            conn.execute(
                insert(session_metadata).values(session_id="broken", key="old", value=nested(300))
            )
    result = cli("--url", migrated_url, "export", "-o", str(tmp_path / "out.jsonl"))
    assert result.exit_code == 1
    assert "session 'broken' not exported" in result.stderr
    assert "Exported 2 session(s)" in result.stderr and "1 could not be exported" in result.stderr
    exported = [
        json.loads(line)["id"] for line in (tmp_path / "out.jsonl").read_text().splitlines()
    ]
    assert exported == ["a", "c"]
