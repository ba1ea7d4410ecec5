"""Fixtures for the viewer's browser tests: headless system Chromium and an in-process server.

Chromium comes from Debian (`chromium`, `chromium-driver`), driven by Selenium with both
paths given explicitly, so Selenium Manager never tries to download a browser or driver.
Without them the tests skip, except in CI (`CI` or SQLSESSIONS_REQUIRE_POSTGRES set),
where a missing browser fails the run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from conftest import postgres_required

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("SQLSESSIONS_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SQLSESSIONS_CHROMEDRIVER", "/usr/bin/chromedriver")


def _unavailable(reason: str) -> None:
    if postgres_required():
        pytest.fail(f"{reason} (required in CI: apt-get install chromium chromium-driver)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A headless Chromium WebDriver, shared by the browser tests."""
    pytest.importorskip("starlette", reason="the ui extra is not installed")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _unavailable("selenium is not installed")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.exists(path) or shutil.which(path)):
            _unavailable(f"{path} not found")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serving(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve `app` with uvicorn in a thread on a free port; yields the base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the viewer did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def start_cli(url: str, *arguments: str) -> tuple[subprocess.Popen[str], str]:
    """Run `sqlsessions --url URL ui ARGUMENTS...`; returns the process and its "Open" line."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), COLUMNS="200")
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from sqlsessions.cli import main; main()",
            "--url",
            url,
            "ui",
            *arguments,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if line.startswith("Open ") or not line:
            return process, line.strip()
    process.kill()
    raise AssertionError("".join(lines))


def wait_until_listening(address: str) -> None:
    """Return once something answers HTTP at `address` (any status)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(address, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # answered (401 is an answer)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
