"""Helpers the Alembic revisions share (they run inside `op`'s migration context)."""

from __future__ import annotations

from alembic import op


def migration_schema() -> str | None:
    """The PostgreSQL schema the migrations run in (`StoreConfig(schema=...)`), if any.

    Alembic renders its own ALTER TABLE outside `schema_translate_map`, so revisions name it.
    """
    schema = op.get_context().version_table_schema
    return schema if schema and op.get_bind().dialect.name == "postgresql" else None


def schema_prefix() -> str:
    """`"schema".` when the migrations run in a PostgreSQL schema, else nothing (for raw SQL)."""
    schema = migration_schema()
    return f'"{schema}".' if schema else ""
