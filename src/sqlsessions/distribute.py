"""Citus: distribute the sqlsessions tables by session, and recognise a Citus coordinator.

Every table is sharded by the session it belongs to (`sessions` by `id`, the others by
`session_id`) and co-located with `sessions`, so every operation on one session runs on
one shard; the migrations' version table becomes a reference table (a copy on each node).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import URL

from sqlsessions import statements as sql
from sqlsessions.errors import CitusUnavailableError, InvalidInputError, SchemaNotReadyError
from sqlsessions.migrate import UPGRADE_COMMAND, VERSION_TABLE
from sqlsessions.migrate import _connection as connection_to  # same package: shared helper

DISTRIBUTION_COLUMNS: tuple[tuple[str, str], ...] = (
    ("sessions", "id"),
    ("messages", "session_id"),
    ("tool_calls", "session_id"),
    ("session_metadata", "session_id"),
    ("archived_messages", "session_id"),
    ("archived_tool_calls", "session_id"),
)
"""Each distributed table and the column it is sharded by; the first one leads co-location."""

REQUIRED_TABLES = ("sessions", "messages", "tool_calls", "session_metadata")
"""The tables of the first revision: distributing needs at least these."""

REFERENCE_TABLES: tuple[str, ...] = (VERSION_TABLE, "model_prices")
"""Small tables every node reads whole: the migrations' versions and the user's price list."""

_PLACEMENT = text(
    "SELECT p.partmethod, p.colocationid,"
    " pg_catalog.column_to_column_name(p.logicalrelid, p.partkey) AS column_name"
    " FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = CAST(:name AS regclass)"
)


def server_is_citus(connection: Connection) -> bool:
    """True when the database behind `connection` has the citus extension (one query;
    none at all on SQLite)."""
    if connection.dialect.name != "postgresql":
        return False
    return connection.execute(sql.select_citus_extension).first() is not None


@dataclass(frozen=True)
class Distribution:
    """What `distribute` changed: tables it distributed or made reference tables."""

    distributed: list[str] = field(default_factory=list)
    referenced: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """False when everything was already in place (the call was a no-op)."""
        return bool(self.distributed or self.referenced)

    def describe(self) -> str:
        """One line saying what happened."""
        if not self.changed:
            return "already distributed by session: nothing to do"
        parts = []
        if self.distributed:
            parts.append(f"distributed {', '.join(self.distributed)} by session (co-located)")
        if self.referenced:
            parts.append(f"made {', '.join(self.referenced)} a reference table")
        return "; ".join(parts)


def qualified(name: str, schema: str | None) -> str:
    """The table name as Citus' functions take it (a regclass text), quoted."""
    quoted = '"' + name.replace('"', '""') + '"'
    if schema is None:
        return quoted
    return '"' + schema.replace('"', '""') + '".' + quoted


def distribute_connection(
    connection: Connection, schema: str | None = None, shard_count: int | None = None
) -> Distribution:
    """Distribute the tables behind `connection` (inside its transaction); idempotent."""
    if shard_count is not None and (
        isinstance(shard_count, bool) or not isinstance(shard_count, int) or shard_count < 1
    ):
        raise InvalidInputError("shard_count", "must be a positive integer")
    if not server_is_citus(connection):
        raise CitusUnavailableError("this database is not a Citus coordinator (no citus extension)")
    _require_tables(connection, schema, REQUIRED_TABLES)
    result = Distribution()
    lead, lead_column = DISTRIBUTION_COLUMNS[0]
    lead_name = qualified(lead, schema)
    colocation = _check_placement(connection, lead_name, lead_column)
    if colocation is None:
        arguments: dict[str, object] = {"name": lead_name, "column": lead_column}
        shards = ""
        if shard_count is not None:
            shards, arguments["shards"] = ", shard_count => :shards", shard_count
        connection.execute(
            text(f"SELECT create_distributed_table(:name, :column{shards})"), arguments
        )
        result.distributed.append(lead)
        colocation = _check_placement(connection, lead_name, lead_column)
    for name, column in DISTRIBUTION_COLUMNS[1:]:
        table = qualified(name, schema)
        if not _exists(connection, table):  # made by a later revision than the database's
            continue
        found = _check_placement(connection, table, column)
        if found is None:
            connection.execute(
                text("SELECT create_distributed_table(:name, :column, colocate_with => :lead)"),
                {"name": table, "column": column, "lead": lead_name},
            )
            result.distributed.append(name)
        elif found != colocation:
            raise CitusUnavailableError(
                f"table {name} is distributed but not co-located with {lead}: "
                f"run SELECT update_distributed_table_colocation('{table}', "
                f"colocate_with => '{lead_name}') first"
            )
    for name in REFERENCE_TABLES:
        table = qualified(name, schema)
        if not _exists(connection, table):
            continue
        placement = connection.execute(_PLACEMENT, {"name": table}).first()
        if placement is None:
            connection.execute(text("SELECT create_reference_table(:name)"), {"name": table})
            result.referenced.append(name)
    return result


def _exists(connection: Connection, table: str) -> bool:
    found = connection.execute(text("SELECT to_regclass(:name)"), {"name": table}).scalar()
    return found is not None


def _require_tables(connection: Connection, schema: str | None, names: Iterable[str]) -> None:
    for name in names:
        found = connection.execute(
            text("SELECT to_regclass(:name)"), {"name": qualified(name, schema)}
        ).scalar()
        if found is None:
            raise SchemaNotReadyError(
                f"table {name} does not exist: run `{UPGRADE_COMMAND}` before distributing"
            )


def is_distributed(connection: Connection, schema: str | None = None) -> bool:
    """True when the database is a Citus coordinator whose sessions table is distributed."""
    if not server_is_citus(connection):
        return False
    lead, column = DISTRIBUTION_COLUMNS[0]
    return _check_placement(connection, qualified(lead, schema), column) is not None


def _check_placement(connection: Connection, table: str, column: str) -> int | None:
    """The co-location group of `table` if it is distributed by `column`; None if it is a
    plain local table; CitusUnavailableError if Citus places it any other way."""
    placement = connection.execute(_PLACEMENT, {"name": table}).first()
    if placement is None:
        return None
    if placement.partmethod != "h" or placement.column_name != column:
        raise CitusUnavailableError(
            f"table {table} is already a Citus table, but not hash-distributed by {column}: "
            "undo that (SELECT undistribute_table(...)) and run this again"
        )
    return int(placement.colocationid)


def distribute(
    url_or_engine: str | URL | Engine | Connection,
    *,
    schema: str | None = None,
    shard_count: int | None = None,
) -> Distribution:
    """Distribute the sqlsessions tables on a Citus coordinator, in one transaction.

    `sessions` by `id`, `messages`, `tool_calls` and `session_metadata` by `session_id`,
    co-located; the version table as a reference table. A second call changes nothing and
    says so (`Distribution.changed` is False). `shard_count` applies to new distributions
    (default: the server's `citus.shard_count`). Raises CitusUnavailableError without Citus.
    """
    with connection_to(url_or_engine) as conn:
        return distribute_connection(conn, schema, shard_count)
