"""The viewer over HTTP (no browser): paging long sessions, the token, input, the CLI."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from sqlsessions import Message, Role, Store, StoreConfig, migrate
from ui_browser import free_port, serving, start_cli, wait_until_listening

pytest.importorskip("starlette", reason="the ui extra is not installed")

from sqlsessions.ui import create_app
from sqlsessions.ui.security import TOKEN_COOKIE, is_loopback

LONG = 10_000


def fetch(url: str, **headers: str) -> tuple[int, str, Any]:
    request = urllib.request.Request(url, headers=headers)
    opener = urllib.request.build_opener(_NoRedirect())
    try:
        with opener.open(request) as response:
            return response.status, response.read().decode(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), exc.headers


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None


def positions(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<li class="message[^"]*" id="m(\d+)"', html)]


def link(html: str, name: str) -> str:
    found = re.search(rf'<a class="{name}" href="([^"]+)"', html)
    assert found, name
    return found.group(1).replace("&amp;", "&")


def test_a_10000_message_session_opens_one_page_at_a_time(migrated_url: str) -> None:
    with Store(StoreConfig(url=migrated_url, cache_size=0)) as store:
        for start in range(0, LONG, 2000):
            store.append(
                "long",
                *(
                    Message(role=Role.USER, content=f"message {n}")
                    for n in range(start, start + 2000)
                ),
            )
    with serving(create_app(migrated_url)) as base:
        status, first, _ = fetch(base + "/sessions/long")
        assert status == 200
        assert positions(first) == list(range(1, 201))
        assert 'class="earlier"' not in first
        _, second, _ = fetch(base + "/sessions/long" + link(first, "later"))
        assert positions(second) == list(range(201, 401))
        _, last, _ = fetch(base + "/sessions/long" + link(first, "last"))
        assert positions(last) == list(range(LONG - 199, LONG + 1))
        assert 'class="later"' not in last
        _, before_last, _ = fetch(base + "/sessions/long" + link(last, "earlier"))
        assert positions(before_last) == list(range(LONG - 399, LONG - 199))
        _, small, _ = fetch(base + "/sessions/long?after=9990&limit=5")
        assert positions(small) == list(range(9991, 9996))


def test_with_a_token_every_request_must_carry_it(sqlite_url: str) -> None:
    token = "tok-" + "x" * 20
    with serving(create_app(sqlite_url, token=token)) as base:
        for path in ("/", "/analytics", "/static/style.css", "/sessions/a", "/nowhere"):
            assert fetch(base + path)[0] == 401
            assert fetch(base + path, Authorization="Bearer wrong")[0] == 401
            assert fetch(base + path, Cookie=f"{TOKEN_COOKIE}=wrong")[0] == 401
        assert fetch(base + "/", Authorization=f"Bearer {token}")[0] == 200
        assert fetch(base + "/", **{"X-Sqlsessions-Token": token})[0] == 200
        assert fetch(base + "/", Cookie=f"{TOKEN_COOKIE}={token}")[0] == 200
        status, _, headers = fetch(f"{base}/analytics?agent=a&token={token}")
        assert status == 303
        assert headers["Location"] == "/analytics?agent=a"
        assert f"{TOKEN_COOKIE}={token}" in headers["Set-Cookie"]
        assert "HttpOnly" in headers["Set-Cookie"]


def test_without_a_token_loopback_pages_are_open_and_carry_a_no_script_policy(
    sqlite_url: str,
) -> None:
    with serving(create_app(sqlite_url)) as base:
        status, _, headers = fetch(base + "/")
        assert status == 200
        assert "script-src 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "limit"), ("limit=x", "limit"), ("after=yesterday", "after"), ("meta=k", "meta")],
)
def test_bad_filters_are_refused_by_name(sqlite_url: str, query: str, field: str) -> None:
    with serving(create_app(sqlite_url)) as base:
        status, html, _ = fetch(f"{base}/?{query}")
    assert status == 400
    assert field in html


def test_a_missing_session_is_a_404_page(sqlite_url: str) -> None:
    with serving(create_app(sqlite_url)) as base:
        assert fetch(base + "/sessions/nope")[0] == 404


def test_only_loopback_addresses_count_as_loopback() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.5", "example.com", ""))


def test_sqlsessions_ui_serves_loopback_without_a_token(sqlite_url: str) -> None:
    migrate(sqlite_url)
    port = free_port()
    process, opened = start_cli(sqlite_url, "--port", str(port))
    try:
        assert opened == f"Open http://127.0.0.1:{port}/"
        wait_until_listening(f"http://127.0.0.1:{port}/")
        assert fetch(f"http://127.0.0.1:{port}/")[0] == 200
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_sqlsessions_ui_uses_a_given_token_even_on_loopback(sqlite_url: str) -> None:
    migrate(sqlite_url)
    port = free_port()
    process, opened = start_cli(sqlite_url, "--port", str(port), "--token", "my-token")
    try:
        assert opened == f"Open http://127.0.0.1:{port}/?token=my-token"
        wait_until_listening(f"http://127.0.0.1:{port}/")
        assert fetch(f"http://127.0.0.1:{port}/")[0] == 401
        assert fetch(f"http://127.0.0.1:{port}/", Authorization="Bearer my-token")[0] == 200
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_templates_and_stylesheet_ship_inside_the_package() -> None:
    from importlib.resources import files

    package = files("sqlsessions.ui")
    for name in ("sessions", "conversation", "analytics", "base", "error", "_chart", "search"):
        assert (package / "templates" / f"{name}.html").is_file()
    assert (package / "static" / "style.css").is_file()
    assert not Path(str(package / "static")).joinpath("app.js").exists()  # no script at all


def test_framework_items_are_shown_when_a_message_carries_them() -> None:
    from types import SimpleNamespace

    from sqlsessions.ui.conversation import conversation_entries

    def message(**fields: Any) -> Any:
        base = {"content": "", "name": None, "tool_call_id": None, "tool_calls": None}
        return SimpleNamespace(**{**base, **fields})

    plain = message(role=Role.USER, content="hi")  # as stored before items existed
    reasoning = message(
        role=Role.ASSISTANT,
        kind="reasoning",
        item_format="openai-agents",
        item={"type": "reasoning", "summary": ["<b>think</b>"]},
    )
    first, second = conversation_entries([1, 2], [plain, reasoning])
    assert first.item is None and first.kind == "message"
    assert second.kind == "reasoning" and second.item_format == "openai-agents"
    assert second.item is not None and '"summary": [' in second.item
    assert "<b>think</b>" in second.item  # kept as text; the template escapes it


def test_sqlsessions_ui_refuses_a_sqlite_file_that_does_not_exist(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from sqlsessions.cli import app

    missing = tmp_path / "nothing-here.db"
    result = CliRunner().invoke(app, ["--url", f"sqlite:///{missing}", "ui", "--port", "0"])
    assert result.exit_code == 1
    assert "does not exist" in result.stderr
    assert not missing.exists()


def test_without_a_token_only_loopback_host_names_are_answered(sqlite_url: str) -> None:
    """A site that rebinds its DNS name to 127.0.0.1 still sends that name: refused."""
    with serving(create_app(sqlite_url)) as base:
        port = base.rsplit(":", 1)[1]
        assert fetch(base + "/", Host=f"attacker.example:{port}")[0] == 403
        assert fetch(base + "/analytics", Host="attacker.example")[0] == 403
        assert fetch(base + "/static/style.css", Host=f"10.0.0.7:{port}")[0] == 403
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "localhost"):
            assert fetch(base + "/", Host=host)[0] == 200, host
    with serving(create_app(sqlite_url, token="t0ken")) as base:  # the token covers any name
        assert fetch(base + "/", Host="viewer.internal", Authorization="Bearer t0ken")[0] == 200
