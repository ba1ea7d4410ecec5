"""Owners across the edges: export/import carry the owner in the JSON, and the CLI's --owner
works in one owner's sessions, leaving everyone else's alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sqlsessions import Message, Role, SessionNotFoundError, Store, StoreConfig
from sqlsessions.cli import app
from sqlsessions.transfer import BadRecord, Record, export_lines, import_records, read_records


def cli(url: str, *args: str) -> Any:
    return CliRunner().invoke(app, ["--url", url, *args], env={"COLUMNS": "200"})


def user(text: str) -> Message:
    return Message(role=Role.USER, content=text)


def seeded(url: str) -> Store:
    """A store where the default owner, alice and bob each hold a session 'chat'."""
    store = Store(StoreConfig(url=url, ttl=None))
    for owner in ("", "alice", "bob"):
        store.scoped(owner).append("chat", user(f"hello from {owner or 'nobody'}"))
    store.scoped("alice").append("only-alice", user("alpaca"))
    return store


def contents(store: Store, owner: str, session_id: str = "chat") -> list[str]:
    store.clear_cache()
    return [m.content for m in store.scoped(owner).get_if_exists(session_id).messages]


def test_export_writes_the_owner_and_import_puts_each_session_back_in_its_owner(
    migrated_url: str, tmp_path: Path
) -> None:
    with seeded(migrated_url) as store:
        lines = list(export_lines(store.scoped("alice")))
        default_lines = list(export_lines(store))
    assert [json.loads(line)["owner"] for line in lines] == ["alice", "alice"]
    assert ["owner" in json.loads(line) for line in default_lines] == [False]  # Go's form

    with Store(StoreConfig(url=migrated_url, ttl=None)) as store:
        for owner in ("", "alice", "bob"):
            store.scoped(owner).delete("chat")
        store.scoped("alice").delete("only-alice")
        records = [Record("export.jsonl", i + 1, json.loads(line)) for i, line in enumerate(lines)]
        problems: list[BadRecord] = []
        counts = import_records(store, records, problems.append)
        assert (counts.imported, problems) == (2, [])
        assert contents(store, "alice") == ["hello from alice"]
        assert contents(store, "alice", "only-alice") == ["alpaca"]
        with pytest.raises(SessionNotFoundError):
            store.get_if_exists("chat")  # nothing landed in the default owner
        assert import_records(store, records, problems.append).unchanged == 2  # idempotent
        # --owner: every document goes to the owner forced, whatever it names.
        forced = import_records(store, records, problems.append, owner="zed")
        assert forced.imported == 2 and contents(store, "zed") == ["hello from alice"]


def test_a_store_scoped_to_one_owner_refuses_to_import_another_owners_session(
    migrated_url: str,
) -> None:
    with seeded(migrated_url) as store:
        document = json.loads(next(iter(export_lines(store.scoped("bob")))))
        document["messages"] = [{"role": "user", "content": "overwrite bob?"}]
        problems: list[BadRecord] = []
        counts = import_records(store.scoped("alice"), [Record("f", 1, document)], problems.append)
        assert counts.skipped == 1 and "owner" in problems[0].reason
        assert contents(store, "bob") == ["hello from bob"]


def test_cli_owner_option_lists_shows_searches_exports_and_deletes_only_that_owners_sessions(
    migrated_url: str, tmp_path: Path
) -> None:
    seeded(migrated_url).close()
    listed = cli(migrated_url, "sessions", "list", "--owner", "alice", "--format", "json")
    assert listed.exit_code == 0, listed.output
    assert sorted(row["id"] for row in json.loads(listed.stdout)) == ["chat", "only-alice"]
    default = cli(migrated_url, "sessions", "list", "--format", "json")
    assert [row["id"] for row in json.loads(default.stdout)] == ["chat"]

    shown = cli(migrated_url, "sessions", "show", "chat", "--owner", "bob")
    assert "hello from bob" in shown.stdout and "owner bob" in shown.stdout
    assert "hello from alice" not in shown.stdout
    missing = cli(migrated_url, "sessions", "show", "only-alice", "--owner", "bob")
    assert missing.exit_code == 1

    found = cli(migrated_url, "search", "hello", "--owner", "bob", "--format", "json")
    assert [hit["snippet"] for hit in json.loads(found.stdout)] == ["<mark>hello</mark> from bob"]

    exported = tmp_path / "alice.jsonl"
    result = cli(migrated_url, "export", "--owner", "alice", "--output", str(exported))
    assert result.exit_code == 0, result.output
    assert {json.loads(line)["owner"] for line in exported.read_text().splitlines()} == {"alice"}

    deleted = cli(migrated_url, "sessions", "delete", "chat", "--owner", "alice", "--yes")
    assert deleted.exit_code == 0, deleted.output
    with Store(StoreConfig(url=migrated_url)) as store:
        with pytest.raises(SessionNotFoundError):
            store.scoped("alice").get_if_exists("chat")
        assert contents(store, "bob") == ["hello from bob"]
        assert contents(store, "") == ["hello from nobody"]

    imported = cli(migrated_url, "import", str(exported))
    assert imported.exit_code == 0, imported.output
    forced = cli(migrated_url, "import", "--owner", "carol", str(exported))
    assert forced.exit_code == 0, forced.output
    with Store(StoreConfig(url=migrated_url)) as store:
        assert contents(store, "alice") == ["hello from alice"]
        assert contents(store, "carol", "only-alice") == ["alpaca"]
        assert contents(store, "") == ["hello from nobody"]


def test_import_of_a_go_document_without_owner_lands_in_the_default_owner(
    migrated_url: str, tmp_path: Path
) -> None:
    document = {"id": "go", "messages": [{"role": "user", "content": "from Go"}]}
    path = tmp_path / "go.json"
    path.write_text(json.dumps(document))
    with Store(StoreConfig(url=migrated_url)) as store:
        import_records(store, read_records(path), lambda problem: None)
        assert contents(store, "", "go") == ["from Go"]
        with pytest.raises(SessionNotFoundError):
            store.scoped("alice").get_if_exists("go")


def test_the_viewer_on_a_scoped_store_shows_that_owners_conversation_with_its_owner(
    migrated_url: str,
) -> None:
    pytest.importorskip("starlette", reason="the ui extra is not installed")
    import urllib.request

    from sqlsessions.ui import create_app
    from ui_browser import serving

    store = seeded(migrated_url)
    try:
        app = create_app(migrated_url, store=store.scoped("bob"))
        with serving(app) as base:
            with urllib.request.urlopen(base + "/sessions/chat") as response:
                page = response.read().decode()
            with urllib.request.urlopen(base + "/search?q=hello") as response:
                found = response.read().decode()
        assert "hello from bob" in page and 'id="owner">bob<' in page
        assert "hello from alice" not in page and "hello from nobody" not in page
        assert "from bob" in found and "alice" not in found and "nobody" not in found
    finally:
        store.close()
