"""Exceptions raised by sqlsessions: one root, each message defaulting to its docstring."""

from __future__ import annotations


class SqlSessionsError(Exception):
    """An error raised by sqlsessions."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class SessionNotFoundError(SqlSessionsError, KeyError):
    """session not found"""

    def __init__(self, session_id: str | None = None) -> None:
        self.session_id = session_id
        message = (
            "session not found" if session_id is None else f"session not found: {session_id!r}"
        )
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0])


class ConflictError(SqlSessionsError):
    """The session was changed by another writer since it was loaded; nothing was written.

    Recover by loading it again (store.get), re-applying your change, and saving;
    for pure appends use store.append, which never conflicts.
    """


class SchemaNotReadyError(SqlSessionsError):
    """The database schema is not at the current revision: run `sqlsessions db upgrade`."""


class InvalidInputError(SqlSessionsError, ValueError):
    """An argument is not valid."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"invalid {field}: {reason}")


class StorageError(SqlSessionsError):
    """The database reported an error; the original is kept as __cause__."""


class CitusUnavailableError(SqlSessionsError):
    """The database is not a Citus coordinator (the citus extension is not installed in it)."""
