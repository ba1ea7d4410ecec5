"""A real PostgreSQL server for the tests and the benchmark (SPEC §5).

``provision_postgres()`` yields a SQLAlchemy URL (``postgresql+psycopg://...``) for a
server with superuser rights, taken from the first source that works:

1. ``SQLSESSIONS_TEST_POSTGRES_URL``: a server you run yourself. When it is set it is
   authoritative: if it does not answer, provisioning fails instead of silently testing
   against some other server.
2. A testcontainers ``PostgresContainer`` (postgres:16-alpine), only when a Docker
   engine answers a ping (checked with a short timeout, so a missing daemon costs ~nothing).
3. A throwaway local server from the ``pgserver`` package (PostgreSQL 16 binaries in a
   wheel; works as root), in a fresh temporary directory removed afterwards.

``create_database`` / ``drop_database`` / ``temporary_database`` give each test (or
module, or benchmark run) a database of its own on that server.

Usable outside pytest, e.g. from ``bench/``::

    from postgres_provision import provision_postgres, temporary_database

    with provision_postgres() as server_url, temporary_database(server_url) as url:
        ...
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

ENV_URL = "SQLSESSIONS_TEST_POSTGRES_URL"
DOCKER_IMAGE = "postgres:16-alpine"
CONNECT_TIMEOUT_SECONDS = 10
DOCKER_PING_TIMEOUT_SECONDS = 3

_log = logging.getLogger(__name__)
_DB_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def to_psycopg_url(url: str) -> str:
    """Normalise ``postgres://`` / ``postgresql://`` (and other drivers) to psycopg 3."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"not a PostgreSQL URL: {mask(url)}")
    return _render(parsed.set(drivername="postgresql+psycopg"))


def mask(url: str | URL) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable URL>"


def check_connection(url: str) -> None:
    """Connect and run ``select 1``; raise if the server does not answer."""
    engine = create_engine(
        url, poolclass=NullPool, connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    )
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1")).scalar_one()
    finally:
        engine.dispose()


@contextmanager
def provision_postgres(report: Callable[[str], None] | None = None) -> Iterator[str]:
    """Yield a ``postgresql+psycopg://`` URL for a working server (see the module doc).

    ``report`` (optional) receives a one-line description of the source used.
    Raises ``RuntimeError`` listing why each source failed when none works.
    """
    say = report or _log.info
    failures: list[str] = []

    env_url = os.environ.get(ENV_URL, "").strip()
    if env_url:
        try:
            url = to_psycopg_url(env_url)
            check_connection(url)
        except Exception as exc:
            raise RuntimeError(
                f"{ENV_URL} is set but unusable ({mask(env_url)}): {_describe(exc)}"
            ) from exc
        say(f"PostgreSQL from {ENV_URL}: {mask(url)}")
        yield url
        return
    failures.append(f"{ENV_URL}: not set")

    for name, source in (("docker", _docker_postgres), ("pgserver", _pgserver_postgres)):
        stack = ExitStack()
        try:
            url = stack.enter_context(source())
            check_connection(url)
        except Exception as exc:
            stack.close()
            failures.append(f"{name}: {_describe(exc)}")
            continue
        with stack:
            say(f"PostgreSQL from {name}: {mask(url)}")
            yield url
        return

    raise RuntimeError("no PostgreSQL server available:\n  - " + "\n  - ".join(failures))


def create_database(admin_url: str, name: str) -> str:
    """Create database ``name`` on the server of ``admin_url``; return its URL."""
    _check_name(name)
    engine = create_engine(admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return _render(make_url(admin_url).set(database=name))


def drop_database(admin_url: str, name: str) -> None:
    """Drop database ``name`` (if it exists), terminating its connections first."""
    _check_name(name)
    engine = create_engine(admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    finally:
        engine.dispose()


def fresh_database_name(prefix: str = "t") -> str:
    """A new unique database name such as ``t_1a2b3c4d``."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@contextmanager
def temporary_database(admin_url: str, prefix: str = "t") -> Iterator[str]:
    """Yield the URL of a fresh, empty database that is dropped afterwards."""
    name = fresh_database_name(prefix)
    url = create_database(admin_url, name)
    try:
        yield url
    finally:
        drop_database(admin_url, name)


# --- sources -----------------------------------------------------------------------


@contextmanager
def _docker_postgres() -> Iterator[str]:
    _ping_docker()
    try:
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:  # testcontainers < 4.14
        from testcontainers.postgres import PostgresContainer

    with PostgresContainer(DOCKER_IMAGE, driver="psycopg") as container:
        yield to_psycopg_url(container.get_connection_url())


def _ping_docker() -> None:
    """Raise unless a Docker engine answers quickly (never hangs)."""
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        raise RuntimeError("no Docker engine (DOCKER_HOST unset, no /var/run/docker.sock)")
    import docker

    client = docker.from_env(timeout=DOCKER_PING_TIMEOUT_SECONDS)
    try:
        client.ping()
    finally:
        client.close()


@contextmanager
def pgserver_instance(prefix: str = "sqlsessions-pg-") -> Iterator[Any]:
    """A throwaway pgserver server in a fresh temp dir, stopped and removed afterwards."""
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        from pgserver.postgres_server import get_server

    # pgserver creates (and, as root, chowns) the pgdata directory itself; the socket
    # lives inside it when the path is short enough, so keep it under the temp root.
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        server = get_server(root / "pgdata", cleanup_mode="stop")
        try:
            yield server
        finally:
            server.cleanup()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def _pgserver_postgres() -> Iterator[str]:
    with pgserver_instance() as server:
        yield pgserver_url(server.get_uri())


def pgserver_url(uri: str) -> str:
    """``postgresql://postgres:@/postgres?host=/tmp/x`` -> the psycopg dialect URL."""
    if not uri.startswith("postgresql://"):
        raise RuntimeError(f"unexpected pgserver URI: {uri}")
    return "postgresql+psycopg://" + uri.removeprefix("postgresql://")


# --- helpers -----------------------------------------------------------------------


def _render(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def _check_name(name: str) -> None:
    if not _DB_NAME.fullmatch(name):
        raise ValueError(f"invalid test database name {name!r} (want [a-z_][a-z0-9_]*)")


def _describe(exc: BaseException) -> str:
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__
