"""PostgreSQL row-level security: the owner scope enforced by the database itself.

Migration 0008 creates one policy per per-session table: a row is visible and writable only
when its `owner` equals the transaction's setting `sqlsessions.owner`. The policies do
nothing until `enable_row_security` (`sqlsessions db row-security enable`) turns row-level
security on for those tables. From then on an application role that does not own the
tables (and is no superuser, and has no BYPASSRLS) sees only the scope it set, whatever SQL
it runs; the owner role (migrations, the reaper, administration) is not restricted.

A store configured with `StoreConfig(row_security=True)` sets the scope at the start of
every transaction with `set_config(..., is_local => true)`, so it ends with the transaction
and never stays on a pooled server connection (safe behind PgBouncer in transaction mode).
A statement the store would run in autocommit then runs in its own short transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, bindparam, func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.sql import Select

from sqlsessions import statements as sql
from sqlsessions.config import StoreConfig
from sqlsessions.distribute import DISTRIBUTION_COLUMNS, qualified
from sqlsessions.errors import InvalidInputError, SchemaNotReadyError
from sqlsessions.migrate import UPGRADE_COMMAND
from sqlsessions.migrate import _connection as connection_to  # same package: shared helper
from sqlsessions.steps import Operation, Steps, Transaction

T = TypeVar("T")

SCOPE_SETTING = "sqlsessions.owner"
"""The transaction-local setting the policies compare each row's `owner` with."""

POLICY_NAME = "sqlsessions_owner_scope"

SCOPED_TABLES: tuple[str, ...] = tuple(name for name, _ in DISTRIBUTION_COLUMNS)
"""Every per-session table: each carries `owner` and gets the policy."""

ANALYTICS_VIEWS = (
    "session_summary",
    "tool_usage",
    "daily_activity",
    "message_costs",
    "usage_daily",
)
"""Views over the scoped tables: made `security_invoker` so they apply the caller's policies."""

MIN_SECURITY_INVOKER_VERSION = 150000
"""PostgreSQL 15: the first with `security_invoker` views (older views bypass the policies)."""

set_row_scope: Select[Any] = select(func.set_config(SCOPE_SETTING, bindparam("owner"), True))


def create_policy_sql(table: str, prefix: str = "") -> str:
    """The DDL creating the owner policy on `table` (`prefix`: `"schema".` or nothing)."""
    check = f"owner = current_setting('{SCOPE_SETTING}', true)"
    return f'CREATE POLICY {POLICY_NAME} ON {prefix}"{table}" USING ({check}) WITH CHECK ({check})'


def drop_policy_sql(table: str, prefix: str = "") -> str:
    """The DDL dropping the owner policy from `table`."""
    return f'DROP POLICY IF EXISTS {POLICY_NAME} ON {prefix}"{table}"'


# --- the store side: every transaction starts by setting its scope ---------------------


def with_row_scope(operation: Operation[T], owner: str) -> Operation[T]:
    """`operation` with `owner` set as the row scope in every transaction it runs.

    Operations run in one transaction get the setting first. Autocommit operations (one
    statement per transaction on PostgreSQL) get it inside each read snapshot they open,
    and each statement outside a snapshot runs in a transaction of its own with it.
    """
    scope = {"owner": owner}

    def steps(tx: Transaction) -> Steps[T]:
        inner = operation.steps(tx)
        in_transaction = not operation.autocommit
        if in_transaction:
            yield set_row_scope, scope
        result: Any = None
        while True:
            try:
                step = inner.send(result)
            except StopIteration as done:
                value: T = done.value
                return value
            statement = step[0]
            if statement is sql.begin_read_snapshot:
                result = yield step
                yield set_row_scope, scope
                in_transaction = True
            elif statement is sql.end_read_snapshot:
                result = yield step
                in_transaction = not operation.autocommit
            elif in_transaction:
                result = yield step
            else:
                yield sql.begin_transaction, None
                yield set_row_scope, scope
                result = yield step
                yield sql.end_read_snapshot, None

    return Operation(
        steps,
        writes=operation.writes,
        autocommit=operation.autocommit,
        direct=False,  # the precompiled paths run only the fixed statements they know
        snapshot=True,
    )


# --- administration: turn the policies on and off --------------------------------------


@dataclass(frozen=True)
class RowSecurityStatus:
    """Which tables enforce the owner policy, and whether the views apply it."""

    enforced: tuple[str, ...]
    not_enforced: tuple[str, ...]
    missing_policy: tuple[str, ...]
    invoker_views: tuple[str, ...]
    definer_views: tuple[str, ...]

    @property
    def enabled(self) -> bool:
        """True when every scoped table enforces its policy and no view bypasses it."""
        return not (self.not_enforced or self.missing_policy or self.definer_views)

    def describe(self) -> str:
        """One line per fact, for the CLI."""
        lines = [
            f"row-level security: {'on' if self.enabled else 'off'}",
            f"enforced on: {', '.join(self.enforced) or '-'}",
        ]
        if self.not_enforced:
            lines.append(f"not enforced on: {', '.join(self.not_enforced)}")
        if self.missing_policy:
            lines.append(
                f"no policy on: {', '.join(self.missing_policy)} (run `{UPGRADE_COMMAND}`)"
            )
        if self.definer_views:
            lines.append(
                "views that read as their owner (bypass the policies): "
                + ", ".join(self.definer_views)
            )
        return "\n".join(lines)


def row_security_status(
    url_or_engine: str | URL | Engine | Connection, *, schema: str | None = None
) -> RowSecurityStatus:
    """Where row-level security is enforced (PostgreSQL)."""
    with connection_to(url_or_engine) as conn:
        return _status(conn, schema)


def enable_row_security(
    url_or_engine: str | URL | Engine | Connection, *, schema: str | None = None
) -> RowSecurityStatus:
    """Turn the owner policies on for every scoped table, in one transaction; idempotent.

    The analytics views become `security_invoker` (PostgreSQL 15+) so that reading them as
    the application role applies the same policies.
    """
    with connection_to(url_or_engine) as conn:
        status = _status(conn, schema)
        if status.missing_policy:
            raise SchemaNotReadyError(
                f"no row-security policy on {', '.join(status.missing_policy)}: "
                f"run `{UPGRADE_COMMAND}` first"
            )
        if _server_version(conn) < MIN_SECURITY_INVOKER_VERSION:
            raise InvalidInputError(
                "server_version",
                "row-level security needs PostgreSQL 15 or newer "
                "(older views would read every owner's rows)",
            )
        _alter(conn, schema, "ENABLE ROW LEVEL SECURITY", "security_invoker = true")
        return _status(conn, schema)


def disable_row_security(
    url_or_engine: str | URL | Engine | Connection, *, schema: str | None = None
) -> RowSecurityStatus:
    """Turn the owner policies off again (they stay defined); idempotent."""
    with connection_to(url_or_engine) as conn:
        _require_postgresql(conn)
        _alter(conn, schema, "DISABLE ROW LEVEL SECURITY", "security_invoker = false")
        return _status(conn, schema)


def _alter(conn: Connection, schema: str | None, table_action: str, view_option: str) -> None:
    for table in _existing(conn, schema, SCOPED_TABLES):
        conn.execute(text(f"ALTER TABLE {qualified(table, schema)} {table_action}"))
    for view in _existing(conn, schema, ANALYTICS_VIEWS):
        conn.execute(text(f"ALTER VIEW {qualified(view, schema)} SET ({view_option})"))


_TABLE_SECURITY = text(
    "SELECT c.relrowsecurity,"
    " EXISTS (SELECT 1 FROM pg_catalog.pg_policy p"
    "  WHERE p.polrelid = c.oid AND p.polname = :policy) AS has_policy"
    " FROM pg_catalog.pg_class c WHERE c.oid = CAST(:name AS regclass)"
)
_VIEW_INVOKER = text(
    "SELECT coalesce(c.reloptions @> ARRAY['security_invoker=true'], false)"
    " FROM pg_catalog.pg_class c WHERE c.oid = CAST(:name AS regclass)"
)


def _status(conn: Connection, schema: str | None) -> RowSecurityStatus:
    _require_postgresql(conn)
    tables = _existing(conn, schema, SCOPED_TABLES)
    if not tables:
        raise SchemaNotReadyError(f"the sqlsessions tables do not exist: run `{UPGRADE_COMMAND}`")
    enforced, not_enforced, missing = [], [], []
    for table in tables:
        row = conn.execute(
            _TABLE_SECURITY, {"name": qualified(table, schema), "policy": POLICY_NAME}
        ).one()
        if not row.has_policy:
            missing.append(table)
        (enforced if row.relrowsecurity else not_enforced).append(table)
    invoker, definer = [], []
    for view in _existing(conn, schema, ANALYTICS_VIEWS):
        is_invoker = conn.execute(_VIEW_INVOKER, {"name": qualified(view, schema)}).scalar()
        (invoker if is_invoker else definer).append(view)
    return RowSecurityStatus(
        tuple(enforced), tuple(not_enforced), tuple(missing), tuple(invoker), tuple(definer)
    )


def _existing(conn: Connection, schema: str | None, names: Iterable[str]) -> list[str]:
    found = []
    for name in names:
        if conn.execute(text("SELECT to_regclass(:n)"), {"n": qualified(name, schema)}).scalar():
            found.append(name)
    return found


def _server_version(conn: Connection) -> int:
    return int(conn.execute(text("SHOW server_version_num")).scalar_one())


def _require_postgresql(conn: Connection) -> None:
    if conn.dialect.name != "postgresql":
        raise InvalidInputError("url", "row-level security needs PostgreSQL")


def row_security_on(config: StoreConfig, dialect: str) -> bool:
    """Whether a store sets its owner as the row scope in each transaction."""
    if config.row_security and dialect != "postgresql":
        raise InvalidInputError("row_security", "row-level security needs PostgreSQL")
    return config.row_security
