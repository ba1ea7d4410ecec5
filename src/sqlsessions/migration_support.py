"""Helpers the Alembic revisions share (they run inside `op`'s migration context)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

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


def load_revision(path: Path) -> ModuleType:
    """The revision module in `path` (revision files are not a package): for a revision that
    restores or reuses what an earlier one created, e.g. on downgrade."""
    spec = importlib.util.spec_from_file_location(f"sqlsessions_revision_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
