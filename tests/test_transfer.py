"""Import and export in the Go package's JSON form: round trips, idempotence, bad records."""

from __future__ import annotations

import io
import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from sqlsessions import Message, Role, Store, StoreConfig
from sqlsessions.cli import app
from sqlsessions.models import parse_timestamp
from sqlsessions.record_reader import RecordReader
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
    (tmp_path / "list.json").write_text('[\n  {"id": "a"},\n  {"id": "b"},\n  7\n]')
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


# --- streaming: bad records by line, bounded memory ------------------------------------------


def jsonl_records(count: int, padding: int = 50) -> list[bytes]:
    return [
        json.dumps(
            {"id": f"s-{i:04d}", "messages": [{"role": "user", "content": "x" * padding}]}
        ).encode()
        for i in range(count)
    ]


def test_an_invalid_utf8_byte_and_an_oversized_record_are_reported_by_line_and_the_rest_imported(
    migrated_url: str, tmp_path: Path
) -> None:
    lines = jsonl_records(200)
    lines[49] = lines[49].replace(b"xxxx", b"xx\xffx", 1)  # line 50: one bad byte mid-record
    lines[119] = json.dumps({"id": "huge", "metadata": {"blob": "y" * 5000}}).encode()  # line 120
    source = tmp_path / "dump.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")

    result = cli("--url", migrated_url, "import", "--max-record-size", "2000", str(source))
    assert result.exit_code == 1
    err = result.stderr
    assert f"{source}:50: not valid UTF-8: byte 0xff" in err
    assert f"{source}:120: record larger than 2000 characters; skipped" in err
    assert "198 imported, 0 unchanged, 2 skipped" in err
    with Store(StoreConfig(url=migrated_url)) as store:
        ids = store.list()
    assert len(ids) == 198 and "s-0049" not in ids and "huge" not in ids and "s-0199" in ids


def test_a_json_array_is_streamed_element_by_element_with_bad_elements_reported(
    tmp_path: Path,
) -> None:
    elements = jsonl_records(5)
    elements[1] = elements[1].replace(b"xxxx", b"xx\xc3x", 1)  # a truncated 2-byte sequence
    (tmp_path / "list.json").write_bytes(b"[\n" + b",\n".join(elements) + b"\n]\n")
    found = [
        (r.line, r.document["id"] if isinstance(r, Record) else r.reason)
        for r in read_records(tmp_path / "list.json")
    ]
    assert found[0] == (2, "s-0000")
    assert found[1][0] == 3 and found[1][1].startswith("not valid UTF-8: byte 0xc3")
    assert found[2:] == [(4, "s-0002"), (5, "s-0003"), (6, "s-0004")]

    # An element over the size limit is skipped; reading goes on when the reader found its end
    # within what it holds, else (it cannot find the next element) the rest is reported skipped.
    elements[1] = json.dumps({"id": "huge", "metadata": {"blob": "y" * 5000}}).encode()
    data = b"[\n" + b",\n".join(elements) + b"\n]\n"
    roomy = list(RecordReader(io.BytesIO(data), "big.json", max_record_chars=2000))
    assert [(r.line, type(r).__name__) for r in roomy] == [
        (2, "Record"),
        (3, "BadRecord"),
        (4, "Record"),
        (5, "Record"),
        (6, "Record"),
    ]
    assert "larger than 2000 characters" in roomy[1].reason  # type: ignore[union-attr]
    tight = list(RecordReader(io.BytesIO(data), "big.json", max_record_chars=2000, chunk_bytes=256))
    assert [(r.line, type(r).__name__) for r in tight] == [(2, "Record"), (3, "BadRecord")]
    assert "larger than 2000 characters" in tight[1].reason  # type: ignore[union-attr]
    assert "rest of the file is skipped" in tight[1].reason  # type: ignore[union-attr]


@pytest.mark.parametrize("layout", ["jsonl", "array"])
def test_the_reader_holds_one_record_and_one_chunk_never_the_file(layout: str) -> None:
    records = jsonl_records(2000, padding=200)
    longest = max(len(record) for record in records)
    data = b"\n".join(records) + b"\n" if layout == "jsonl" else b"[" + b",\n".join(records) + b"]"
    chunk = 4096
    reader = RecordReader(io.BytesIO(data), "dump", max_record_chars=longest, chunk_bytes=chunk)
    consumed, separator = (0, len(b"\n")) if layout == "jsonl" else (len(b"["), len(b",\n"))
    for count, record in enumerate(reader, start=1):
        assert isinstance(record, Record)
        consumed += len(records[count - 1]) + separator
        # Never more than one chunk read ahead of the record being handed out...
        assert reader.bytes_read <= consumed + chunk
        # ...and never more text held than a record plus a chunk.
        assert reader.largest_buffer <= longest + 2 * chunk
    assert count == 2000
    assert reader.bytes_read == len(data) > 50 * (longest + 2 * chunk)


def test_a_pretty_printed_file_that_is_not_one_document_is_read_as_json_lines(
    migrated_url: str, tmp_path: Path
) -> None:
    text = '{not json at all\n{"id": "second"}\n'
    for source in ("file", "stdin"):
        (tmp_path / "odd.jsonl").write_text(text)
        args = [str(tmp_path / "odd.jsonl")] if source == "file" else ["-"]
        result = CliRunner().invoke(
            app, ["--url", migrated_url, "import", *args], input=text if source == "stdin" else None
        )
        assert result.exit_code == 1
        assert ":1: not valid JSON" in result.stderr
        assert "skipped" in result.stderr
    with Store(StoreConfig(url=migrated_url)) as store:
        assert store.list() == ["second"]


def test_export_keeps_expires_at_and_import_restores_it(migrated_url: str, tmp_path: Path) -> None:
    with Store(StoreConfig(url=migrated_url, ttl=timedelta(hours=5))) as store:
        store.append("five-hours", Message(role=Role.USER, content="x"))
    with Store(StoreConfig(url=migrated_url, ttl=None)) as store:
        store.append("forever", Message(role=Role.USER, content="y"))
    result = cli("--url", migrated_url, "export", "-o", str(tmp_path / "out.jsonl"))
    assert result.exit_code == 0, result.output
    docs = {
        doc["id"]: doc for doc in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())
    }
    assert docs["forever"]["expires_at"] is None
    expires = parse_timestamp(docs["five-hours"]["expires_at"])
    assert timedelta(hours=4) < expires - datetime.now(timezone.utc) <= timedelta(hours=5)

    copy = f"sqlite:///{tmp_path / 'copy.db'}"
    assert cli("--url", copy, "import", str(tmp_path / "out.jsonl")).exit_code == 0
    with Store(StoreConfig(url=copy)) as store:
        page = store.list_sessions()
    assert {s.id: s.expires_at for s in page.sessions} == {"five-hours": expires, "forever": None}
    again = cli("--url", copy, "import", str(tmp_path / "out.jsonl"))
    assert "0 imported, 2 unchanged, 0 skipped" in again.stderr
