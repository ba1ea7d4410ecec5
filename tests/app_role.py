"""A PostgreSQL login role that does not own the sqlsessions tables: the "application role"
row-level security restricts (tests/test_row_security.py, the ADK owner tests)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool

APP_ROLE_PASSWORD = "app-role-password"


def run_admin(url: str, *statements: str) -> None:
    """Run `statements` in one transaction as the URL's (owner) role."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        engine.dispose()


@contextmanager
def application_role(owner_url: str, schema: str = "public") -> Iterator[tuple[str, str]]:
    """(role name, URL as that role): a fresh LOGIN role with plain DML grants on the tables
    in `schema` that exist now; dropped afterwards."""
    role = f"sqlsessions_app_{secrets.token_hex(4)}"
    run_admin(
        owner_url,
        f"CREATE ROLE {role} LOGIN PASSWORD '{APP_ROLE_PASSWORD}'",
        f'GRANT USAGE ON SCHEMA "{schema}" TO {role}',
        f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO {role}',
        f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "{schema}" TO {role}',
    )
    try:
        url = make_url(owner_url).set(username=role, password=APP_ROLE_PASSWORD)
        yield role, url.render_as_string(hide_password=False)
    finally:
        run_admin(owner_url, f"DROP OWNED BY {role}", f"DROP ROLE {role}")
