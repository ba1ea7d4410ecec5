"""Read the database behind a test store with plain SQL (a sync engine of its own)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, text

from sqlsessions.config import normalize_url


def query(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    """The rows `sql` returns on the database at `url` (which may carry a search_path)."""
    engine = create_engine(normalize_url(url))
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


def execute(url: str, sql: str, **params: Any) -> None:
    """Run one statement and commit."""
    engine = create_engine(normalize_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(text(sql), params)
    finally:
        engine.dispose()
