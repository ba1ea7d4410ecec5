"""Alembic environment for sqlsessions.

The connection comes from the Alembic config object when sqlsessions drives Alembic
from code (`config.attributes["connection"]`); otherwise an engine is built from
$SQLSESSIONS_DATABASE_URL or the ini file's sqlalchemy.url. A PostgreSQL schema comes
from `config.attributes["schema"]`, `-x schema=NAME` or $SQLSESSIONS_SCHEMA.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection, create_engine, pool, text

from sqlsessions.config import normalize_url
from sqlsessions.distribute import server_is_citus
from sqlsessions.schema import metadata_for_schema

VERSION_TABLE = "sqlsessions_alembic_version"

config = context.config


def _schema() -> str | None:
    schema = config.attributes.get("schema")
    if schema is None:
        schema = context.get_x_argument(as_dictionary=True).get("schema")
    return schema or os.environ.get("SQLSESSIONS_SCHEMA") or None


def _run(connection: Connection) -> None:
    schema = _schema()
    if schema is not None and connection.dialect.name == "postgresql":
        # Only when missing: CREATE SCHEMA IF NOT EXISTS still needs CREATE on the database,
        # which the owner of a schema made for it by a DBA may not have.
        exists = connection.execute(
            text("SELECT 1 FROM pg_namespace WHERE nspname = :name"), {"name": schema}
        ).first()
        if exists is None:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        connection = connection.execution_options(schema_translate_map={None: schema})
    else:
        schema = None
    context.configure(
        connection=connection,
        target_metadata=metadata_for_schema(schema),
        version_table=VERSION_TABLE,
        version_table_schema=schema,
        include_schemas=schema is not None,
        include_name=lambda name, type_, _parent: type_ != "schema" or name == schema,
        include_object=lambda _obj, name, type_, _reflected, _compare: (
            type_ != "table" or name != VERSION_TABLE
        ),
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        compare_server_default=True,
    )
    with context.begin_transaction():
        if server_is_citus(connection):
            # Distributed tables and the views over them change in one transaction: Citus
            # then needs every statement on one connection per node (or it refuses).
            connection.execute(text("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'"))
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = os.environ.get("SQLSESSIONS_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    engine = create_engine(normalize_url(url or "sqlite:///sessions.db"), poolclass=pool.NullPool)
    with engine.connect() as conn:
        _run(conn)
        conn.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("sqlsessions migrations run online only: give a database URL")
run_migrations_online()
