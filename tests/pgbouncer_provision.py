"""A real PgBouncer in transaction mode in front of the test PostgreSQL server (SPEC §5, §10).

``provision_pgbouncer(server_url)`` yields the URL of a PgBouncer (Debian's ``pgbouncer``
package) that forwards every database name to the server of ``server_url`` (a wildcard
database entry, so per-test databases work), in transaction pooling mode, clients trusted:

1. ``SQLSESSIONS_TEST_PGBOUNCER_URL``: a PgBouncer you run yourself in front of the same
   server (transaction mode); authoritative when set.
2. Otherwise the ``pgbouncer`` binary on the PATH (or in /usr/sbin), started in a fresh
   temporary directory (config, auth file, log, pid) on a free loopback port, stopped
   afterwards. PgBouncer refuses to run as root: as root it runs as the OS user owning the
   server's Unix socket directory (a pgserver server), else as ``postgres`` (created by
   Debian's postgresql-common, which pgbouncer depends on), created if missing.

``through_pgbouncer(database_url, pgbouncer_url)`` turns a database URL on the server into
the URL of the same database through PgBouncer.

PgBouncer >= 1.21 can track protocol-level prepared statements itself
(``max_prepared_statements``); it is set to 0 here so the pooler behaves like the
transaction-mode poolers the store must be safe behind (Debian 12 ships 1.18, which has no
such support at all).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import make_url
from sqlalchemy.engine import URL

from postgres_provision import check_connection, mask, to_psycopg_url

ENV_URL = "SQLSESSIONS_TEST_PGBOUNCER_URL"
OS_USER = "postgres"
START_TIMEOUT_SECONDS = 15.0
DEFAULT_POOL_SIZE = 20
"""Server connections per database: fewer than the suite's clients at times, as in production."""


def find_pgbouncer() -> str:
    """The pgbouncer executable; RuntimeError saying how to install it when missing."""
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/sbin")
    if not found:
        raise RuntimeError("pgbouncer not found (install it: apt-get install -y pgbouncer)")
    return found


@contextmanager
def provision_pgbouncer(server_url: str) -> Iterator[str]:
    """Yield a ``postgresql+psycopg://`` URL (database ``postgres``) of a PgBouncer in
    transaction mode in front of the server of ``server_url``."""
    env_url = os.environ.get(ENV_URL, "").strip()
    if env_url:
        url = through_pgbouncer(server_url, to_psycopg_url(env_url))
        try:
            check_connection(url)
        except Exception as exc:
            raise RuntimeError(f"{ENV_URL} is set but unusable ({mask(env_url)}): {exc}") from exc
        yield url
        return
    executable = find_pgbouncer()
    server = make_url(server_url)
    failures: list[str] = []
    for _ in range(3):  # a free port can be taken before PgBouncer binds it
        with _pgbouncer_process(executable, server) as (port, error):
            if error is None:
                yield through_pgbouncer(
                    server_url, server.set(host="127.0.0.1", port=port, query={})
                )
                return
            failures.append(error)
    raise RuntimeError("PgBouncer did not start:\n" + "\n".join(failures))


def through_pgbouncer(database_url: str, pgbouncer_url: str | URL) -> str:
    """``database_url`` (a database on the server) reached through the PgBouncer at
    ``pgbouncer_url`` (its host and port; the database name is kept)."""
    bouncer = make_url(pgbouncer_url)
    database = make_url(database_url)
    query = {k: v for k, v in database.query.items() if k not in ("host", "port")}
    return database.set(host=bouncer.host, port=bouncer.port, query=query).render_as_string(
        hide_password=False
    )


# --- running Debian's pgbouncer -------------------------------------------------------------


@contextmanager
def _pgbouncer_process(executable: str, server: URL) -> Iterator[tuple[int, str | None]]:
    """Start pgbouncer; yield (port, None) once it answers, or (port, why it failed)."""
    user = _os_user_for(server)
    directory = Path(tempfile.mkdtemp(prefix="sqlsessions-pgbouncer-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        port = _free_port()
        config = _write_files(directory, server, port, _version(executable))
        if user is not None:
            entry = pwd.getpwnam(user)
            for path in (directory, *directory.iterdir()):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        with open(directory / "stdout.log", "wb") as output:
            process = subprocess.Popen(
                [executable, str(config)],
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=directory,
                user=user,
                group=pwd.getpwnam(user).pw_gid if user is not None else None,
                extra_groups=[] if user is not None else None,
                start_new_session=True,
            )
        error = _wait_until_ready(process, server.set(host="127.0.0.1", port=port, query={}))
        if error is not None:
            error += "\n" + _log_tail(directory)
        yield port, error
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(directory, ignore_errors=True)


def _os_user_for(server: URL) -> str | None:
    """The unprivileged OS user to run pgbouncer as (None: the current user, not root)."""
    if os.geteuid() != 0:
        return None
    socket_dir = server.query.get("host")
    if isinstance(socket_dir, str) and socket_dir.startswith("/"):
        owner = pwd.getpwuid(os.stat(socket_dir).st_uid).pw_name
        if owner != "root":
            return owner  # it can reach the socket in its own directory
    try:
        pwd.getpwnam(OS_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", OS_USER],
            check=True,
            capture_output=True,
        )
    return OS_USER


def _version(executable: str) -> tuple[int, ...]:
    output = subprocess.run(
        [executable, "--version"], capture_output=True, text=True, check=True
    ).stdout
    found = re.search(r"PgBouncer (\d+)\.(\d+)", output)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def _write_files(directory: Path, server: URL, port: int, version: tuple[int, ...]) -> Path:
    """pgbouncer.ini and the auth file; returns the config's path."""
    user = server.username or "postgres"
    socket_dir = server.query.get("host")
    host = socket_dir if isinstance(socket_dir, str) and socket_dir else server.host
    target = f"host={host} port={server.port or 5432} user={user}"
    if server.password:
        target += f" password={server.password}"
    (directory / "userlist.txt").write_text(f'"{user}" ""\n')
    settings = {
        "listen_addr": "127.0.0.1",
        "listen_port": str(port),
        "unix_socket_dir": "",
        "auth_type": "trust",
        "auth_file": str(directory / "userlist.txt"),
        "pool_mode": "transaction",
        "default_pool_size": str(DEFAULT_POOL_SIZE),
        "max_client_conn": "1000",
        "logfile": str(directory / "pgbouncer.log"),
        "pidfile": str(directory / "pgbouncer.pid"),
        "ignore_startup_parameters": "extra_float_digits",
    }
    if version >= (1, 21):
        settings["max_prepared_statements"] = "0"
    lines = ["[databases]", f"* = {target}", "", "[pgbouncer]"]
    lines += [f"{key} = {value}" for key, value in settings.items()]
    config = directory / "pgbouncer.ini"
    config.write_text("\n".join(lines) + "\n")
    return config


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_ready(process: subprocess.Popen[bytes], url: URL) -> str | None:
    """None once a query goes through pgbouncer; else why not."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    check_url = url.set(database="postgres").render_as_string(hide_password=False)
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"pgbouncer exited with code {process.returncode}"
        try:
            check_connection(check_url)
        except Exception as exc:
            last = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            time.sleep(0.1)
            continue
        return None
    return f"pgbouncer did not answer within {START_TIMEOUT_SECONDS:.0f} s: {last}"


def _log_tail(directory: Path) -> str:
    texts = []
    for name in ("stdout.log", "pgbouncer.log"):
        path = directory / name
        if path.exists():
            texts.append(path.read_text(errors="replace")[-2000:])
    return "\n".join(texts)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()  # SIGTERM: immediate shutdown
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
