"""The rules that keep the schema distributable by session on Citus (README "Scaling out").

They hold for the models (`schema.py`, which the migrations must match: `db check`) and for
every statement in `statements.py` and `append_statements.py`, so a future migration or
statement that would break a distributed deployment fails here, on any database, before it
reaches a cluster.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from sqlalchemy import (
    ClauseElement,
    ForeignKeyConstraint,
    Table,
    TextClause,
    UniqueConstraint,
    create_engine,
    text,
)
from sqlalchemy.pool import NullPool
from sqlalchemy.sql import visitors
from sqlalchemy.sql.functions import FunctionElement

from sqlsessions import append_statements, statements
from sqlsessions.distribute import DISTRIBUTION_COLUMNS, REFERENCE_TABLES
from sqlsessions.schema import metadata

DISTRIBUTION = dict(DISTRIBUTION_COLUMNS)
DISTRIBUTED = [table for table in metadata.tables.values() if table.name in DISTRIBUTION]


def key_columns(table: Table) -> Iterator[tuple[str, list[str]]]:
    """(what, columns) for the primary key and every unique constraint and unique index."""
    yield f"{table.name} primary key", [c.name for c in table.primary_key.columns]
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint):
            yield f"{table.name} unique {constraint.name}", [c.name for c in constraint.columns]
    for index in table.indexes:
        if index.unique:
            yield f"{table.name} unique index {index.name}", [c.name for c in index.columns]


def test_every_table_is_distributed_or_a_reference_table_by_db_distribute() -> None:
    assert set(metadata.tables) == set(DISTRIBUTION) | (
        set(metadata.tables) & set(REFERENCE_TABLES)
    ), (
        "a new table must be added to sqlsessions.distribute.DISTRIBUTION_COLUMNS (or, for a "
        "small table without sessions that every node reads whole, to REFERENCE_TABLES)"
    )
    assert not set(DISTRIBUTION) & set(REFERENCE_TABLES)
    assert DISTRIBUTION_COLUMNS[0] == ("sessions", "id")


def test_every_primary_key_and_unique_index_starts_with_the_session() -> None:
    for table in DISTRIBUTED:
        for what, columns in key_columns(table):
            assert columns[:1] == [DISTRIBUTION[table.name]], (
                f"{what} {columns} must start with {DISTRIBUTION[table.name]}: Citus enforces "
                "uniqueness only within a shard"
            )


def test_every_child_table_references_its_session_on_the_same_shard() -> None:
    for table in DISTRIBUTED:
        if table.name == "sessions":
            continue
        assert "session_id" in table.columns, f"{table.name} needs a session_id column"
        foreign_keys = [c for c in table.constraints if isinstance(c, ForeignKeyConstraint)]
        assert foreign_keys, f"{table.name} needs a foreign key leading to sessions"
        for fk in foreign_keys:
            pairs = [(element.parent.name, element.column) for element in fk.elements]
            referred = pairs[0][1].table
            assert referred.name in DISTRIBUTION, f"{fk.name} refers to an unknown table"
            assert (pairs[0][0], pairs[0][1].name) == ("session_id", DISTRIBUTION[referred.name]), (
                f"{table.name}: foreign key {fk.name} must start by matching session_id with "
                f"{referred.name}.{DISTRIBUTION[referred.name]} (co-located rows)"
            )
    assert metadata.tables["messages"].c.session_id.references(metadata.tables["sessions"].c.id)


# --- statements: Citus allows only IMMUTABLE functions in ON CONFLICT DO UPDATE SET ----------


def our_statements() -> Iterator[tuple[str, ClauseElement]]:
    """Every statement in `statements.py` and `append_statements.py`: module constants, and
    each factory called for PostgreSQL (factories that take no argument or a `dialect`)."""
    for module in (statements, append_statements):
        for name, value in vars(module).items():
            if isinstance(value, ClauseElement):
                yield name, value
            elif inspect.isfunction(value) and value.__module__ == module.__name__:
                parameters = list(inspect.signature(value).parameters)
                if parameters == []:
                    made = [(f"{name}()", value())]
                elif parameters == ["dialect"]:
                    made = [(f"{name}()", value("postgresql"))]
                else:
                    continue
                for label, statement in made:
                    if isinstance(statement, ClauseElement):
                        yield label, statement


def do_update_values(statement: ClauseElement) -> Iterator[Any]:
    """Each value expression of every ON CONFLICT DO UPDATE SET in `statement` (CTEs too)."""
    for element in visitors.iterate(statement):
        on_conflict = getattr(element, "_post_values_clause", None)
        values = getattr(on_conflict, "update_values_to_set", None)
        if values is None:
            continue
        pairs = values.items() if isinstance(values, dict) else values
        for _column, value in pairs:
            yield value


def functions_in_do_update(statement: ClauseElement) -> tuple[int, set[str]]:
    """(how many SET values, the names of the functions they call); raw SQL is refused."""
    values = list(do_update_values(statement))
    names: set[str] = set()
    for value in values:
        for element in visitors.iterate(value):
            assert not isinstance(element, TextClause), "raw SQL in DO UPDATE SET: unverifiable"
            if isinstance(element, FunctionElement):
                names.add(str(getattr(element, "name", "")).lower())
    return len(values), names


def volatility(server_url: str, names: set[str]) -> dict[str, set[str]]:
    """{function: its pg_proc.provolatile kinds} ('i' immutable, 's' stable, 'v' volatile)."""
    engine = create_engine(server_url, poolclass=NullPool)
    with engine.connect() as conn:
        found = {
            name: set(
                conn.execute(
                    text("SELECT provolatile FROM pg_proc WHERE proname = :name"), {"name": name}
                ).scalars()
            )
            for name in names
        }
    engine.dispose()
    return found


def test_do_update_set_clauses_call_only_immutable_functions(postgres_server_url: str) -> None:
    values, functions = 0, set()
    for _name, statement in our_statements():
        count, names = functions_in_do_update(statement)
        values += count
        functions |= names
    assert values >= 6  # the append and metadata upserts were found
    not_immutable = {
        f: k for f, k in volatility(postgres_server_url, functions).items() if k != {"i"}
    }
    assert not_immutable == {}, "Citus refuses these in ON CONFLICT DO UPDATE SET"


def test_the_rule_check_catches_a_stable_or_volatile_function(postgres_server_url: str) -> None:
    from sqlalchemy import func
    from sqlalchemy.dialects.postgresql import insert

    from sqlsessions.schema import sessions

    bad = insert(sessions).on_conflict_do_update(
        index_elements=["id"], set_={"updated_at": func.now(), "agent_id": func.md5("x")}
    )
    count, names = functions_in_do_update(bad)
    assert (count, names) == (2, {"now", "md5"})
    assert volatility(postgres_server_url, names) == {"now": {"s"}, "md5": {"i"}}
