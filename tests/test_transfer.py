"""Import and export in the Go package's JSON form: round trips, idempotence, bad records."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from sqlsessions import Role, Store, StoreConfig
from sqlsessions.cli import app
from sqlsessions.models import parse_timestamp
from sqlsessions.schema import messages, session_metadata, sessions, tool_calls
from sqlsessions.transfer import (
    BadRecord,
    Record,
    import_session,
    read_records,
    session_from_document,
)

STAMPS = [
    "2026-03-01T10:00:00Z",
    "2026-03-01T12:00:00.5+02:00",
    "2026-03-02T09:15:30.123456789Z",
    "2026-03-02T23:59:59.999999-05:30",
    "2026-03-03T00:00:00.000001+02:00",
]


def go_session(rng: random.Random, i: int) -> dict[str, Any]:
    """A session document as the Go package writes it (empty fields omitted)."""
    doc: dict[str, Any] = {"id": f"go-{i:04d}"}
    agent = rng.choice(["", "support", "sales", "ops"])
    if agent:
        doc["agent_id"] = agent
    msgs: list[dict[str, Any]] = []
    if rng.random() < 0.5:
        msgs.append({"role": "system", "content": "You are helpful."})
    for turn in range(rng.randint(0, 4)):
        msgs.append({"role": "user", "content": f"question {turn} ✓ «{i}»"})
        if rng.random() < 0.5:
            calls = [
                {
                    "id": f"call_{i}_{turn}_{k}",
                    "type": "function",
                    "function": {
                        "name": rng.choice(["search", "lookup", "quote"]),
                        "arguments": json.dumps({"q": f"x{k}", "n": k}),
                    },
                }
                for k in range(rng.randint(1, 2))
            ]
            msgs.append({"role": "assistant", "content": "", "tool_calls": calls})
            for call in calls:
                result = {"role": "tool", "content": f"result of {call['id']}"}
                result["tool_call_id"] = call["id"]
                if rng.random() < 0.3:
                    result["name"] = call["function"]["name"]
                msgs.append(result)
        msgs.append({"role": "assistant", "content": f"answer {turn}\nwith a second line"})
    doc["messages"] = msgs
    doc["created_at"] = rng.choice(STAMPS)
    doc["updated_at"] = rng.choice(STAMPS)
    if rng.random() < 0.6:
        doc["metadata"] = {
            "channel": rng.choice(["slack", "email"]),
            "score": rng.choice([1, 2.5, 0.1]),
            "flags": {"vip": rng.random() < 0.5, "tags": ["a", "b"], "none": None},
        }
    return doc


@pytest.fixture(scope="module")
def dump() -> list[dict[str, Any]]:
    rng = random.Random(5)
    return [go_session(rng, i) for i in range(1000)]


def canonical(doc: dict[str, Any]) -> dict[str, Any]:
    """A session document with timestamps as instants (microseconds) and empty fields dropped
    (and the export's extra `expires_at`, which the Go package does not have)."""
    out = {
        key: value
        for key, value in doc.items()
        if value not in ("", {}, None) and key != "expires_at"
    }
    out["created_at"] = parse_timestamp(doc["created_at"])
    out["updated_at"] = parse_timestamp(doc["updated_at"])
    out.setdefault("messages", [])
    return out


def cli(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result


def table_snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with Store(StoreConfig(url=url)) as store, store.engine.connect() as conn:
        return {
            table.name: sorted(tuple(row) for row in conn.execute(select(table)))
            for table in (sessions, messages, tool_calls, session_metadata)
        }


def test_a_dump_of_1000_go_sessions_imports_and_exports_as_the_same_documents(
    migrated_url: str, dump: list[dict[str, Any]], tmp_path: Path
) -> None:
    source = tmp_path / "dump.jsonl"
    source.write_text("".join(json.dumps(doc) + "\n" for doc in dump), encoding="utf-8")

    imported = cli("--url", migrated_url, "import", str(source))
    assert imported.exit_code == 0, imported.output
    assert "1000 imported, 0 unchanged, 0 skipped" in imported.stderr

    exported = cli("--url", migrated_url, "export")
    assert exported.exit_code == 0, exported.output
    lines = exported.stdout.splitlines()
    assert [json.loads(line)["id"] for line in lines] == sorted(doc["id"] for doc in dump)
    assert [canonical(json.loads(line)) for line in lines] == [
        canonical(doc) for doc in sorted(dump, key=lambda d: d["id"])
    ]

    before = table_snapshot(migrated_url)
    again = cli("--url", migrated_url, "import", str(source))
    assert again.exit_code == 0, again.output
    assert "0 imported, 1000 unchanged, 0 skipped" in again.stderr
    assert table_snapshot(migrated_url) == before  # rows, versions and expiry untouched
    assert cli("--url", migrated_url, "export").stdout == exported.stdout


def test_an_export_imported_into_an_empty_database_reproduces_it(
    migrated_url: str, tmp_path: Path, dump: list[dict[str, Any]]
) -> None:
    with Store(StoreConfig(url=migrated_url)) as store:
        for doc in dump[:50]:
            import_session(store, session_from_document(doc))
    first = cli("--url", migrated_url, "export", "--output", str(tmp_path / "a.jsonl"))
    assert first.exit_code == 0, first.output
    assert "Exported 50 session(s)" in first.stderr
    target = f"sqlite:///{tmp_path / 'copy.db'}"
    assert cli("--url", target, "import", str(tmp_path / "a.jsonl")).exit_code == 0
    cli("--url", target, "export", "-o", str(tmp_path / "b.jsonl"))
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()


def test_importing_a_changed_document_replaces_the_stored_session_exactly(
    migrated_url: str,
) -> None:
    with Store(StoreConfig(url=migrated_url)) as store:
        session = store.get("chat")
        session.agent_id = "old"
        for i in range(5):
            session.add_message(Role.USER, f"m{i}")
        session.set_metadata("gone", True)
        store.save(session)
        doc = {
            "id": "chat",
            "agent_id": "new",
            "messages": [{"role": "user", "content": "only this"}],
            "created_at": "2026-01-01T00:00:00+02:00",
            "updated_at": "2026-01-02T00:00:00Z",
            "metadata": {"kept": [1, 2]},
        }
        assert import_session(store, session_from_document(doc)) == "imported"
        assert import_session(store, session_from_document(doc)) == "unchanged"
        store.clear_cache()
        stored = json.loads(store.get_if_exists("chat").to_json())
    assert canonical(stored) == canonical(doc)


def test_bad_records_are_reported_with_their_line_and_the_rest_is_imported(
    migrated_url: str, tmp_path: Path
) -> None:
    good = {"id": "ok-1", "messages": [], "created_at": STAMPS[0], "updated_at": STAMPS[0]}
    lines = [
        json.dumps(good),
        "{not json",
        "",
        json.dumps([1, 2]),
        json.dumps({**good, "id": "bad-role", "messages": [{"role": "robot", "content": ""}]}),
        json.dumps({"messages": []}),
        json.dumps({**good, "id": "ok-2"}),
    ]
    source = tmp_path / "mixed.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = cli("--url", migrated_url, "import", str(source), str(tmp_path / "missing.json"))
    assert result.exit_code == 1
    err = result.stderr
    assert f"{source}:2: not valid JSON" in err
    assert f"{source}:4: invalid document: must be a JSON object" in err
    assert f"{source}:5: invalid messages[0].role" in err
    assert f"{source}:6: invalid id: missing" in err
    assert f"{tmp_path / 'missing.json'}:0: cannot read file" in err
    assert "2 imported, 0 unchanged, 5 skipped" in err
    assert "Traceback" not in result.output
    with Store(StoreConfig(url=migrated_url)) as store:
        assert store.list() == ["ok-1", "ok-2"]


def test_json_files_may_hold_one_session_a_list_or_a_key_value_dump(tmp_path: Path) -> None:
    doc = {"id": "a", "messages": []}
    (tmp_path / "one.json").write_text(json.dumps(doc, indent=2))
    (tmp_path / "list.json").write_text(
        '[\n  {"id": "a"},\n  {"id": "b"},\n  7\n]'
    )
    (tmp_path / "kv.json").write_text(
        json.dumps({"session:a": doc, "session:b": json.dumps({"id": "b"})})
    )
    (tmp_path / "broken.json").write_text('[\n {"id": "a"},\n {"id": \n')

    def parsed(name: str) -> list[tuple[int, Any]]:
        return [
            (r.line, r.document if isinstance(r, Record) else r.reason[:14])
            for r in read_records(tmp_path / name)
        ]

    assert parsed("one.json") == [(1, doc)]
    assert parsed("list.json") == [(2, {"id": "a"}), (3, {"id": "b"}), (4, 7)]
    assert [line for line, _ in parsed("kv.json")] == [1, 1]
    assert session_from_document(json.dumps({"id": "b"})).id == "b"
    broken = list(read_records(tmp_path / "broken.json"))
    assert isinstance(broken[0], Record) and isinstance(broken[1], BadRecord)
    assert broken[1].line == 3


def test_import_reads_standard_input_given_as_a_dash(migrated_url: str) -> None:
    data = json.dumps({"id": "piped", "messages": [{"role": "user", "content": "hi"}]}) + "\n"
    result = CliRunner().invoke(app, ["--url", migrated_url, "import", "-"], input=data)
    assert result.exit_code == 0, result.output
    with Store(StoreConfig(url=migrated_url)) as store:
        assert store.get_if_exists("piped").messages[0].content == "hi"


def test_export_can_keep_only_one_agents_sessions(
    migrated_url: str, dump: list[dict[str, Any]]
) -> None:
    with Store(StoreConfig(url=migrated_url)) as store:
        for doc in dump[:40]:
            import_session(store, session_from_document(doc))
    result = cli("--url", migrated_url, "export", "--agent", "sales")
    ids = [json.loads(line)["id"] for line in result.stdout.splitlines()]
    assert ids == sorted(doc["id"] for doc in dump[:40] if doc.get("agent_id") == "sales")
    assert ids
