"""Store configuration: database URL, time-to-live, schema, prepared statements; URL helpers."""

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

PREPARE_THRESHOLD_PARAMETER = "prepare_threshold"
"""The URL query parameter that sets `StoreConfig.prepare_threshold` (`?prepare_threshold=5`)."""

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
    `prepare_threshold` (PostgreSQL): after how many executions on one connection psycopg
    prepares a statement on the server. None (the default) never does, which keeps the store
    safe behind a transaction-mode pooler such as PgBouncer, where a statement prepared on a
    server connection can run for another client. Set it (psycopg's own default is 5) only on
    a direct connection or a pooler that handles prepared statements. `?prepare_threshold=N`
    in the URL sets it too.
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
    prepare_threshold: int | None = None
    row_security: bool = False
    """PostgreSQL: set the store's owner as the row scope at the start of every transaction,
    for row-level security (`sqlsessions db row-security enable`; see the README)."""

    def __post_init__(self) -> None:
        ttl: Any = self.ttl
        if isinstance(ttl, (int, float)) and not isinstance(ttl, bool):
            # Compared before math.isfinite, which overflows on a huge integer.
            if not 0 < ttl <= MAX_TTL.total_seconds() or not math.isfinite(ttl):
                raise InvalidInputError("ttl", f"must be between 0 and {MAX_TTL} (or None)")
            object.__setattr__(self, "ttl", timedelta(seconds=ttl))
        elif ttl is not None and not isinstance(ttl, timedelta):
            raise InvalidInputError("ttl", "must be a timedelta, a number of seconds, or None")
        if self.ttl is not None and not timedelta(0) < self.ttl <= MAX_TTL:
            raise InvalidInputError(
                "ttl", f"must be positive and at most {MAX_TTL} (use None for no expiration)"
            )
        if self.schema is not None and (
            not isinstance(self.schema, str) or not self.schema.isidentifier()
        ):
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
        if not isinstance(self.engine_options, dict) or not all(
            isinstance(key, str) for key in self.engine_options
        ):
            raise InvalidInputError("engine_options", "must be a dict of keyword arguments")
        if self.auto_migrate is not None and not isinstance(self.auto_migrate, bool):
            raise InvalidInputError("auto_migrate", "must be True, False or None")
        if not isinstance(self.row_security, bool):
            raise InvalidInputError("row_security", "must be True or False")
        normalize_url(self.url)  # fail early on a malformed URL
        object.__setattr__(self, "prepare_threshold", self._resolved_prepare_threshold())

    def _resolved_prepare_threshold(self) -> int | None:
        """The threshold given here or in the URL (both given must agree)."""
        given = check_prepare_threshold(self.prepare_threshold)
        in_url, from_url = url_prepare_threshold(self.url)
        if not in_url or from_url == given:
            return given
        if given is None:
            return from_url
        raise InvalidInputError(
            "prepare_threshold",
            f"the URL says {from_url} and the configuration says {given}: give it once",
        )

    def __repr__(self) -> str:
        return (
            f"StoreConfig(url={mask_password(self.url)!r}, ttl={self.ttl!r}, "
            f"schema={self.schema!r}, auto_migrate={self.auto_migrate!r}, "
            f"cache_size={self.cache_size!r}, prepare_threshold={self.prepare_threshold!r})"
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
    return parsed.set(drivername=drivers[backend]).difference_update_query(
        [PREPARE_THRESHOLD_PARAMETER]
    )


def check_prepare_threshold(value: Any) -> int | None:
    """`value` if it is a valid prepare threshold (None or an integer >= 0)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(
            "prepare_threshold", "must be None (never prepare) or an integer >= 0"
        )
    return value


def url_prepare_threshold(url: str | URL) -> tuple[bool, int | None]:
    """Whether `url` carries `?prepare_threshold=`, and its value (`none` means None).

    The parameter is ours, not libpq's: `normalize_url` removes it before connecting.
    """
    try:
        value = make_url(url).query.get(PREPARE_THRESHOLD_PARAMETER)
    except Exception as exc:
        raise InvalidInputError("url", f"not a database URL: {mask_password(url)}") from exc
    if value is None:
        return False, None
    text = value.strip().lower() if isinstance(value, str) else ""  # given twice: a tuple
    if text == "none":
        return True, None
    try:
        if not (text.isascii() and text.isdigit()):
            raise ValueError(text)
        return True, int(text)
    except ValueError as exc:  # also more digits than int() accepts
        raise InvalidInputError(
            "prepare_threshold",
            f"the URL's {PREPARE_THRESHOLD_PARAMETER} must be an integer >= 0 or none",
        ) from exc


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
