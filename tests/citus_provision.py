"""A real Citus cluster for the tests and the benchmark (SPEC §10).

``provision_citus()`` yields a ``postgresql+psycopg://`` URL of a Citus coordinator's
database (the ``citus`` extension installed, workers registered), from the first source
that works:

1. ``SQLSESSIONS_TEST_CITUS_URL``: a cluster you run yourself. When it is set it is
   authoritative: if it does not answer, or has no Citus, provisioning fails.
2. A ``citusdata/citus`` container (single node) through testcontainers, only when a
   Docker engine answers.
3. ``../shared/citus/build-and-run.sh`` next to the repository (as root: builds Citus
   from the shared source tarball once, then starts or reuses a coordinator and two
   workers on loopback; a re-run takes about a second). This is what CI uses.

Tests share that one database: ``temporary_schema`` gives each test (or session) a fresh
schema and a URL whose connections find it first on their search path (Citus propagates
the schema to the workers); it is dropped afterwards. Creating a database per test would
need the extension and the node registrations repeated in every new database on every node.
"""

from __future__ import annotations

import logging
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool

from postgres_provision import _ping_docker, check_connection, mask, to_psycopg_url

ENV_URL = "SQLSESSIONS_TEST_CITUS_URL"
DOCKER_IMAGE = "citusdata/citus:13.2"
SHARED_CITUS = Path(__file__).resolve().parents[2] / "shared" / "citus"
BUILD_SCRIPT = SHARED_CITUS / "build-and-run.sh"
TARBALL = SHARED_CITUS / "citus-13.2.2.tar.gz"
BUILD_BASE = "/tmp/citus-ci"
BUILD_DATABASE = "sqlsessions_test"
BUILD_TIMEOUT_SECONDS = 1200

_log = logging.getLogger(__name__)


def build_and_run_command() -> list[str]:
    """The command CI runs (also from `.ci/run`) to build or reuse the local cluster."""
    return [
        "bash",
        str(BUILD_SCRIPT),
        str(TARBALL),
        "--base",
        BUILD_BASE,
        "--db",
        BUILD_DATABASE,
    ]


def check_citus(url: str) -> None:
    """Raise unless `url` answers and is a Citus coordinator with at least one node."""
    check_connection(url)
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            version = conn.execute(
                text("SELECT extversion FROM pg_extension WHERE extname = 'citus'")
            ).scalar()
            if version is None:
                raise RuntimeError("the citus extension is not installed in this database")
    finally:
        engine.dispose()


@contextmanager
def provision_citus(report: Callable[[str], None] | None = None) -> Iterator[str]:
    """Yield a ``postgresql+psycopg://`` URL of a Citus coordinator (see the module doc).

    Raises ``RuntimeError`` listing why each source failed when none works.
    """
    say = report or _log.info
    failures: list[str] = []

    env_url = os.environ.get(ENV_URL, "").strip()
    if env_url:
        try:
            url = to_psycopg_url(env_url)
            check_citus(url)
        except Exception as exc:
            raise RuntimeError(
                f"{ENV_URL} is set but unusable ({mask(env_url)}): {describe(exc)}"
            ) from exc
        say(f"Citus from {ENV_URL}: {mask(url)}")
        yield url
        return
    failures.append(f"{ENV_URL}: not set")

    try:
        with _docker_citus() as url:
            check_citus(url)
            say(f"Citus from docker ({DOCKER_IMAGE}, single node): {mask(url)}")
            yield url
            return
    except _Unavailable as exc:
        failures.append(f"docker: {exc}")

    try:
        url = _build_and_run()
        check_citus(url)
    except Exception as exc:
        failures.append(f"build-and-run.sh: {describe(exc)}")
    else:
        say(f"Citus from {BUILD_SCRIPT.name} (coordinator + 2 workers): {mask(url)}")
        yield url
        return
    raise RuntimeError("no Citus cluster available:\n  - " + "\n  - ".join(failures))


class _Unavailable(Exception):
    """A source that cannot be used here (as opposed to a test failing inside it)."""


@contextmanager
def _docker_citus() -> Iterator[str]:
    try:
        _ping_docker()
        try:
            from testcontainers.community.postgres import PostgresContainer
        except ImportError:  # testcontainers < 4.14
            from testcontainers.postgres import PostgresContainer
        container = PostgresContainer(DOCKER_IMAGE, dbname="postgres", driver="psycopg")
        container.start()
    except Exception as exc:
        raise _Unavailable(describe(exc)) from exc
    try:
        yield to_psycopg_url(container.get_connection_url())
    finally:
        container.stop()


def _build_and_run() -> str:
    if not BUILD_SCRIPT.is_file() or not TARBALL.is_file():
        raise RuntimeError(f"{BUILD_SCRIPT} or {TARBALL.name} not found")
    if os.geteuid() != 0:
        raise RuntimeError("the script needs root (it installs Debian packages)")
    done = subprocess.run(
        build_and_run_command(),
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
        check=False,
    )
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise RuntimeError(f"exit {done.returncode}: {tail}")
    return to_psycopg_url(done.stdout.strip().splitlines()[-1])


# --- a schema per test ---------------------------------------------------------------


def fresh_schema_name(prefix: str = "t") -> str:
    """A new unique schema name such as ``t_1a2b3c4d``."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def with_search_path(url: str, schema: str) -> str:
    """`url` whose connections search `schema` first."""
    parsed = make_url(url)
    return parsed.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )


def run_admin(url: str, *statements: str) -> None:
    engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


@contextmanager
def temporary_schema(server_url: str, prefix: str = "t") -> Iterator[str]:
    """Yield a URL on the Citus database whose search path starts at a fresh, empty schema;
    the schema (with any distributed tables in it) is dropped afterwards."""
    name = fresh_schema_name(prefix)
    run_admin(server_url, f'CREATE SCHEMA "{name}"')
    try:
        yield with_search_path(server_url, name)
    finally:
        run_admin(server_url, f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def describe(exc: BaseException) -> str:
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__
