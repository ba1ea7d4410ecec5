"""sqlsessions: AI-agent conversation sessions persisted in PostgreSQL or SQLite."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _package_version

from sqlsessions.aio import AsyncStore
from sqlsessions.config import DEFAULT_SESSION_TTL, StoreConfig
from sqlsessions.errors import (
    ConflictError,
    InvalidInputError,
    SchemaNotReadyError,
    SessionNotFoundError,
    SqlSessionsError,
    StorageError,
)
from sqlsessions.migrate import migrate
from sqlsessions.models import Message, Role, Session, ToolCall, ToolFunction
from sqlsessions.skill import Skill
from sqlsessions.store import Store

try:
    __version__ = _package_version("sqlsessions")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = [
    "DEFAULT_SESSION_TTL",
    "AsyncStore",
    "ConflictError",
    "InvalidInputError",
    "Message",
    "Role",
    "SchemaNotReadyError",
    "Session",
    "SessionNotFoundError",
    "Skill",
    "SqlSessionsError",
    "StorageError",
    "Store",
    "StoreConfig",
    "ToolCall",
    "ToolFunction",
    "__version__",
    "migrate",
]
