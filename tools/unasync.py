"""Generate the sync `Store` (src/sqlsessions/store.py) from `AsyncStore` (aio.py).

The async facade is the source of truth; the sync one is derived by rewriting names and
removing `async`/`await`, then formatted with ruff. `--check` exits 1 when store.py is
stale (CI runs it), so the two can never drift apart.

    python tools/unasync.py          # regenerate
    python tools/unasync.py --check  # verify
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "sqlsessions" / "aio.py"
TARGET = ROOT / "src" / "sqlsessions" / "store.py"

HEADER = "# Generated from aio.py by tools/unasync.py: edit aio.py and regenerate.\n"

# Whole texts that differ in meaning (docstrings), replaced first.
TEXTS = [
    (
        '"""AsyncStore: the session store for asyncio code; a thin executor of `operations`."""',
        '"""Store: the Go package\'s session store, synchronous; executes `operations`."""',
    ),
    (
        '''    """`Store` for asyncio programs: every method is a coroutine with the same meaning.

    Runs on SQLAlchemy's asyncio engine (psycopg async for PostgreSQL, aiosqlite for
    SQLite); accepts the same URLs and configuration as `Store`. Use `async with` or
    `await store.close()`.
    """''',
        '''    """Persistent session storage with the API of the Go `sessions.Store`.

    Runs on a SQLAlchemy engine (psycopg for PostgreSQL, sqlite3 for SQLite). Use it as a
    context manager or call `close()`. Thread-safe: one Store can serve a whole process.
    """''',
    ),
    ("in an asyncio task; `await handle.stop()`", "in a daemon thread; `handle.stop()`"),
    ("The SQLAlchemy asyncio engine", "The SQLAlchemy engine"),
    ("from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine\n", ""),
    (
        "from sqlalchemy.engine import URL\n",
        "from sqlalchemy import Connection, Engine\nfrom sqlalchemy.engine import URL\n",
    ),
    ("import asyncio\n", "import threading\nimport time\n"),
    ("asyncio.Lock()", "threading.Lock()"),
    ("on the driver's connection", "on the DB-API cursor"),
    ("asyncio.sleep(", "time.sleep("),
]

# Names, replaced as whole words.
NAMES = {
    "AsyncStore": "Store",
    "AsyncDirectExecutor": "DirectExecutor",
    "AsyncEngine": "Engine",
    "AsyncConnection": "Connection",
    "create_asyncio_engine": "create_sync_engine",
    "drive_async": "drive_sync",
    "ReaperTask": "ReaperThread",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
}

# `await conn.run_sync(fn, args...)` calls `fn(conn, args...)` directly.
RUN_SYNC = re.compile(r"(\w+)\.run_sync\(\s*(\w+),\s*")


def generate(source: str) -> str:
    text = source
    for old, new in TEXTS:
        if old not in text:
            raise SystemExit(f"unasync: expected text not found in aio.py: {old[:60]!r}")
        text = text.replace(old, new)
    for old, new in NAMES.items():
        text = re.sub(rf"\b{re.escape(old)}\b", new, text)
    text = RUN_SYNC.sub(lambda m: f"{m.group(2)}({m.group(1)}, ", text)
    text = re.sub(r"\basync (def|with|for)\b", r"\1", text)
    text = re.sub(r"\bawait ", "", text)
    return HEADER + _ruff(text)


def _ruff(text: str) -> str:
    ruff = [sys.executable, "-m", "ruff"]
    fixed = subprocess.run(
        [*ruff, "check", "--fix-only", "--select", "I,F401", "--stdin-filename", str(TARGET), "-"],
        input=text,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    return subprocess.run(
        [*ruff, "format", "--stdin-filename", str(TARGET), "-"],
        input=fixed,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout


def main(argv: list[str]) -> int:
    expected = generate(SOURCE.read_text())
    if "--check" in argv:
        if TARGET.read_text() != expected:
            print(
                "src/sqlsessions/store.py is stale: run `python tools/unasync.py`", file=sys.stderr
            )
            return 1
        print("store.py matches aio.py")
        return 0
    TARGET.write_text(expected)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
