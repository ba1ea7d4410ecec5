"""`sqlsessions ui` in a real browser (headless Chromium), on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from sqlsessions import Store, StoreConfig
from ui_browser import browser, free_port, serving, start_cli, wait_until_listening
from ui_data import (
    XSS_AGENT,
    XSS_ARGUMENTS,
    XSS_CONTENT,
    XSS_IMG,
    XSS_META_KEY,
    XSS_META_VALUE,
    XSS_SESSION,
    seed_agents,
    seed_demo,
    seed_xss,
)

pytestmark = pytest.mark.browser
__all__ = ["browser"]  # the fixture, re-exported for pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def seed(url: str) -> str:
    with Store(StoreConfig(url=url, cache_size=0)) as store:
        seed_demo(store)
        seed_agents(store)
        seed_xss(store)
    return url


@pytest.fixture
def seeded_url(migrated_url: str) -> str:
    return seed(migrated_url)


@pytest.fixture
def viewer(seeded_url: str) -> Iterator[str]:
    from sqlsessions.ui import create_app

    with serving(create_app(seeded_url)) as base:
        yield base


def by_css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def click_and_wait(driver: Any, element: Any) -> None:
    """Click a link or button and wait for the next page to replace this one."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    page = driver.find_element("tag name", "html")
    element.click()
    WebDriverWait(driver, 30).until(expected_conditions.staleness_of(page))


def assert_nothing_ran(driver: Any) -> None:
    """No alert opened, no injected script or handler ran, no injected element exists."""
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 - reading it is the check
    assert driver.execute_script("return [window.__xss, window.__xss_id]") == [None, None]
    assert by_css(driver, "main script, main img, main svg[onload], main [onerror]") == []


def test_the_sessions_page_lists_sessions_newest_first_and_filters_them(
    browser: Any, viewer: str
) -> None:
    browser.get(viewer + "/")
    ids = [cell.text for cell in by_css(browser, "tr.session-row td.id")]
    assert ids[0] == XSS_SESSION  # written last
    assert "demo-trip-to-lisbon" in ids and "support-bot-00" in ids
    assert all(row.text for row in by_css(browser, "tr.session-row"))

    by_css(browser, "input[name=agent]")[0].send_keys("support-bot")
    click_and_wait(browser, by_css(browser, "form.filters button")[0])
    agents = {cell.text for cell in by_css(browser, "tr.session-row td.agent")}
    assert agents == {"support-bot"}

    browser.get(viewer + "/?meta=" + quote("team=blue"))
    ids = [cell.text for cell in by_css(browser, "tr.session-row td.id")]
    assert ids and all(sid.endswith(("-01",)) for sid in ids)

    browser.get(viewer + "/?after=2999-01-01")
    assert by_css(browser, "#no-sessions")


def test_the_sessions_page_pages_with_cursors(browser: Any, viewer: str) -> None:
    browser.get(viewer + "/?limit=4")
    seen = [cell.text for cell in by_css(browser, "tr.session-row td.id")]
    while by_css(browser, "#next-page"):
        click_and_wait(browser, by_css(browser, "#next-page")[0])
        seen.extend(cell.text for cell in by_css(browser, "tr.session-row td.id"))
    assert len(seen) == len(set(seen)) == 11  # demo + 9 agents' + the hostile one


def test_a_conversation_shows_tool_calls_next_to_their_results_and_errors(
    browser: Any, viewer: str
) -> None:
    browser.get(viewer + "/")
    click_and_wait(browser, by_css(browser, "a[href='/sessions/demo-trip-to-lisbon']")[0])
    assert by_css(browser, "#session-id")[0].text == "demo-trip-to-lisbon"
    assert "travel-assistant" in by_css(browser, "#agent")[0].text
    assert "cli-demo" in by_css(browser, "#metadata")[0].text
    roles = [el.text.lower() for el in by_css(browser, "li.message .meta .role")]
    assert roles[:3] == ["system", "user", "assistant"]
    call = by_css(browser, "#call-call_1")[0]
    assert "get_weather" in call.text
    assert '"city": "Lisbon"' in by_css(browser, "#call-call_1 pre.arguments")[0].text
    assert "sunny" in by_css(browser, "#call-call_1 pre.result-content")[0].text
    failed = by_css(browser, "#call-call_3")[0]
    assert "error" in failed.get_attribute("class").split()
    assert "no table for 2" in failed.text
    assert "error" not in by_css(browser, "#call-call_4")[0].get_attribute("class").split()


def test_the_charts_draw_from_the_analytics_views(browser: Any, viewer: str) -> None:
    browser.get(viewer + "/analytics")
    for name in ("messages-per-day", "sessions-per-day", "tool-calls"):
        bars = by_css(browser, f"#chart-{name} svg rect.bar")
        assert bars, name
        assert all(bar.size["height"] > 0 and bar.size["width"] > 0 for bar in bars)
    days = {t.text for t in by_css(browser, "#chart-messages-per-day svg text")}
    assert len([d for d in days if re.fullmatch(r"\d\d-\d\d", d)]) >= 5  # a week of data
    tools = by_css(browser, "#chart-tool-calls")[0].text
    assert {"search", "lookup_order", "get_weather", "book_table"} <= set(tools.split())
    browser.get(viewer + "/analytics?agent=support-bot")
    legend = by_css(browser, "#chart-messages-per-day ul.legend")[0].text
    assert legend.strip() == "support-bot"


def test_stored_html_and_script_are_shown_as_text_and_never_run(browser: Any, viewer: str) -> None:
    browser.get(viewer + "/")
    assert_nothing_ran(browser)
    page = browser.find_element("tag name", "main").text
    assert XSS_SESSION in page and XSS_AGENT in page
    link = [a for a in by_css(browser, "td.id a") if a.text == XSS_SESSION]
    click_and_wait(browser, link[0])
    assert_nothing_ran(browser)
    main = browser.find_element("tag name", "main").text
    for literal in (XSS_CONTENT, XSS_IMG, XSS_META_KEY, XSS_META_VALUE, XSS_SESSION, "fn<i>x</i>"):
        assert literal in main, literal
    arguments = by_css(browser, "pre.arguments")[0].text
    assert "<img src=x onerror=alert(3)>" in arguments and "</pre><script>" in arguments
    assert arguments != XSS_ARGUMENTS  # formatted JSON, still literal text
    browser.get(viewer + "/analytics")
    assert_nothing_ran(browser)
    assert XSS_AGENT in browser.find_element("tag name", "main").text
    browser.get(viewer + "/sessions/" + quote("<script>alert(9)</script>", safe=""))
    assert_nothing_ran(browser)
    assert "<script>alert(9)</script>" in browser.find_element("tag name", "main").text


def test_search_highlights_the_hit_and_its_link_opens_the_conversation_there(
    browser: Any, viewer: str
) -> None:
    browser.get(viewer + "/")
    click_and_wait(browser, next(a for a in by_css(browser, "nav a") if a.text == "Search"))
    by_css(browser, "input[name=q]")[0].send_keys("vegetarian")
    click_and_wait(browser, by_css(browser, "#search-form button")[0])
    assert by_css(browser, "tr.hit")
    marks = by_css(browser, "tr.hit:first-child td.snippet mark")
    assert marks and {m.text.lower() for m in marks} == {"vegetarian"}
    assert marks[0].value_of_css_property("background-color") != "rgba(0, 0, 0, 0)"
    seq = by_css(browser, "tr.hit:first-child td.num a")[0].text
    click_and_wait(browser, by_css(browser, "tr.hit:first-child a.hit-link")[0])
    assert by_css(browser, "#session-id")[0].text == "demo-trip-to-lisbon"
    assert browser.current_url.endswith(f"#m{seq}")
    first = by_css(browser, "li.message")[0]
    assert first.get_attribute("id") == f"m{seq}" and "vegetarian" in first.text
    browser.get(viewer + "/search?q=" + quote("xss OR onerror OR window"))
    assert_nothing_ran(browser)


def test_only_get_and_head_are_served(viewer: str) -> None:
    for method in ("POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        for path in ("/", "/sessions/demo-trip-to-lisbon", "/analytics", "/nowhere"):
            request = urllib.request.Request(viewer + path, method=method, data=b"x=1")
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request)
            assert refused.value.code == 405, (method, path)
    head = urllib.request.urlopen(urllib.request.Request(viewer + "/", method="HEAD"))
    assert head.status == 200


def test_the_database_password_never_reaches_a_page(
    browser: Any, postgres_url: str, tmp_path: Path
) -> None:
    from sqlalchemy.engine import make_url

    from sqlsessions import migrate
    from sqlsessions.ui import create_app

    migrate(postgres_url)
    password = "s3cret-Pa55word"
    url = make_url(postgres_url).set(password=password).render_as_string(hide_password=False)
    with Store(StoreConfig(url=url, cache_size=0)) as store:
        seed_demo(store)
    with serving(create_app(url)) as base:
        for path in (
            "/",
            "/sessions/demo-trip-to-lisbon",
            "/analytics",
            "/sessions/nope",
            "/?limit=x",
        ):
            browser.get(base + path)
            assert password not in browser.page_source, path
        assert "***" in browser.find_element("css selector", "header .db").text


def test_a_non_loopback_host_requires_the_printed_token_on_every_request(
    browser: Any, seeded_url: str
) -> None:
    port = free_port()
    process, opened = start_cli(seeded_url, "--host", "0.0.0.0", "--port", str(port))
    try:
        match = re.fullmatch(r"Open http://0\.0\.0\.0:(\d+)/\?token=(\S+)", opened)
        assert match, opened
        token = match.group(2)
        base = f"http://127.0.0.1:{port}"
        wait_until_listening(base + "/")
        for path in ("/", "/analytics", "/sessions/demo-trip-to-lisbon", "/static/style.css"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(base + path)
            assert refused.value.code == 401
            with pytest.raises(urllib.error.HTTPError) as wrong:
                urllib.request.urlopen(base + path + "?token=" + token[:-1] + "x")
            assert wrong.value.code == 401
        browser.delete_all_cookies()
        browser.get(base + "/analytics")
        assert "Unauthorized" in browser.page_source and not by_css(browser, "svg")
        browser.get(f"{base}/analytics?token={token}")
        assert browser.current_url == base + "/analytics"  # the token left the address bar
        assert by_css(browser, "#chart-tool-calls svg rect.bar")
        browser.get(base + "/")  # the cookie carries it from now on
        assert by_css(browser, "tr.session-row")
        request = urllib.request.Request(base + "/", headers={"Authorization": f"Bearer {token}"})
        assert urllib.request.urlopen(request).status == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
        browser.delete_all_cookies()


def test_screenshots_of_the_viewer(browser: Any, sqlite_url: str) -> None:
    """Writes docs/ui-*.png, which the README shows (from SQLite: a file, deterministic)."""
    from sqlsessions import migrate
    from sqlsessions.ui import create_app

    migrate(sqlite_url)
    with serving(create_app(seed(sqlite_url))) as viewer:
        take_screenshots(browser, viewer)


def take_screenshots(browser: Any, viewer: str) -> None:
    browser.set_window_size(1280, 900)
    shots = {
        "ui-sessions.png": "/",
        "ui-conversation.png": "/sessions/demo-trip-to-lisbon",
        "ui-analytics.png": "/analytics",
        "ui-search.png": "/search?q=" + quote("lisbon OR vegetarian OR weather"),
    }
    for name, path in shots.items():
        browser.get(viewer + path)
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1280, min(max(900, int(height) + 20), 2400))
        assert browser.save_screenshot(str(DOCS / name))
        assert (DOCS / name).stat().st_size > 10_000
    browser.set_window_size(1280, 900)


def test_sqlsessions_demo_then_ui_shows_the_demo_conversation_and_its_charts(
    browser: Any, migrated_url: str
) -> None:
    demo = subprocess.run(
        [
            sys.executable,
            "-c",
            "from sqlsessions.cli import main; main()",
            "--url",
            migrated_url,
            "demo",
        ],
        env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
        capture_output=True,
        text=True,
        check=False,
    )
    assert demo.returncode == 0, demo.stderr
    port = free_port()
    process, opened = start_cli(migrated_url, "--port", str(port))
    try:
        assert opened == f"Open http://127.0.0.1:{port}/"
        wait_until_listening(opened.removeprefix("Open "))
        browser.get(opened.removeprefix("Open "))
        click_and_wait(browser, by_css(browser, "a[href='/sessions/demo-trip-to-lisbon']")[0])
        assert "search_restaurants" in by_css(browser, "#call-call_2")[0].text
        assert "JV-4471" in browser.find_element("tag name", "main").text
        click_and_wait(browser, by_css(browser, "header nav a[href='/analytics']")[0])
        for name in ("messages-per-day", "sessions-per-day", "tool-calls"):
            assert by_css(browser, f"#chart-{name} svg rect.bar"), name
    finally:
        process.terminate()
        process.wait(timeout=30)
