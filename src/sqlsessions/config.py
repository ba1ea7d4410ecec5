"""Store configuration: database URL, time-to-live, schema; URL helpers."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import URL, make_url

from sqlsessions.cache import DEFAULT_CACHE_SIZE
from sqlsessions.errors import InvalidInputError

DEFAULT_SESSION_TTL = timedelta(days=7)
"""Sessions expire 7 days after they were last saved or touched, unless configured otherwise."""

MAX_TTL = timedelta(days=365 * 100)
"""The longest TTL accepted; for longer, use None (no expiration)."""

DEFAULT_DATABASE_URL = "sqlite:///sessions.db"
DATABASE_URL_ENV = "SQLSESSIONS_DATABASE_URL"

_SYNC_DRIVERS = {"postgresql": "postgresql+psycopg", "sqlite": "sqlite+pysqlite"}
_ASYNC_DRIVERS = {"postgresql": "postgresql+psycopg_async", "sqlite": "sqlite+aiosqlite"}


@dataclass(frozen=True)
class StoreConfig:
    """How a `Store` connects and how long sessions live.

    `ttl=None` means sessions never expire (the Go package documents this meaning for
    a zero TTL but silently applies the default; here `None` really means no expiry).
    `auto_migrate=None` migrates SQLite databases on first use and never PostgreSQL ones.
    `schema` puts every table (and Alembic's version table) in that PostgreSQL schema.
    `cache_size` bounds the process-local cache (sessions, least recently used evicted);
    0 disables it.
    """

    url: str | URL = DEFAULT_DATABASE_URL
    ttl: timedelta | None = DEFAULT_SESSION_TTL
    schema: str | None = None
    auto_migrate: bool | None = None
    cache_size: int = DEFAULT_CACHE_SIZE
    engine_options: dict[str, Any] = field(default_factory=dict)
    search_language: str = "simple"
    """PostgreSQL text search configuration `store.search` uses ('simple': no stemming, the
    one migration 0006 indexes; see the README's search section for another language)."""

    def __post_init__(self) -> None:
        ttl: Any = self.ttl
        if isinstance(ttl, (int, float)) and not isinstance(ttl, bool):
            if not math.isfinite(ttl) or not 0 < ttl <= MAX_TTL.total_seconds():
                raise InvalidInputError("ttl", f"must be between 0 and {MAX_TTL} (or None)")
            object.__setattr__(self, "ttl", timedelta(seconds=ttl))
        elif ttl is not None and not isinstance(ttl, timedelta):
            raise InvalidInputError("ttl", "must be a timedelta, a number of seconds, or None")
        if self.ttl is not None and not timedelta(0) < self.ttl <= MAX_TTL:
            raise InvalidInputError(
                "ttl", f"must be positive and at most {MAX_TTL} (use None for no expiration)"
            )
        if self.schema is not None and not self.schema.isidentifier():
            raise InvalidInputError("schema", "must be a plain SQL identifier")
        if (
            isinstance(self.cache_size, bool)
            or not isinstance(self.cache_size, int)
            or self.cache_size < 0
        ):
            raise InvalidInputError("cache_size", "must be a non-negative integer")
        if not isinstance(self.search_language, str) or not re.fullmatch(
            r"[a-z_][a-z0-9_]*", self.search_language
        ):
            raise InvalidInputError("search_language", "must be a text search configuration name")
        normalize_url(self.url)  # fail early on a malformed URL

    def __repr__(self) -> str:
        return (
            f"StoreConfig(url={mask_password(self.url)!r}, ttl={self.ttl!r}, "
            f"schema={self.schema!r}, auto_migrate={self.auto_migrate!r}, "
            f"cache_size={self.cache_size!r})"
        )


def url_from_environment(url: str | None = None) -> str:
    """The URL to use: the one given, else $SQLSESSIONS_DATABASE_URL, else the SQLite default."""
    return url or os.environ.get(DATABASE_URL_ENV) or DEFAULT_DATABASE_URL


def normalize_url(url: str | URL, *, asynchronous: bool = False) -> URL:
    """Parse `url` and pick sqlsessions' driver for its dialect (psycopg, sqlite3, aiosqlite)."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise InvalidInputError("url", f"not a database URL: {mask_password(url)}") from exc
    backend = parsed.get_backend_name()
    if backend == "postgres":
        backend = "postgresql"
    drivers = _ASYNC_DRIVERS if asynchronous else _SYNC_DRIVERS
    if backend not in drivers:
        raise InvalidInputError(
            "url", f"unsupported database {backend!r}: use postgresql or sqlite"
        )
    return parsed.set(drivername=drivers[backend])


def mask_password(url: str | URL) -> str:
    """The URL as text with any password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        text = str(url)
        if "@" in text and "://" in text:
            scheme, rest = text.split("://", 1)
            credentials, host = rest.rsplit("@", 1)
            user = credentials.split(":", 1)[0]
            return f"{scheme}://{user}:***@{host}"
        return text
