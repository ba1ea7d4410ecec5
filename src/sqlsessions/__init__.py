"""sqlsessions: AI-agent conversation sessions persisted in PostgreSQL or SQLite."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _package_version

from sqlsessions.aio import AsyncStore
from sqlsessions.compaction import ArchivedSegment, HistoryReplaced
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
from sqlsessions.scope import Scope
from sqlsessions.search import SearchHit, SearchPage
from sqlsessions.skill import Skill
from sqlsessions.store import Store
from sqlsessions.usage import ModelPrice

try:
    __version__ = _package_version("sqlsessions")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = [
    "DEFAULT_SESSION_TTL",
    "ArchivedSegment",
    "AsyncStore",
    "ConflictError",
    "HistoryReplaced",
    "InvalidInputError",
    "Message",
    "ModelPrice",
    "Role",
    "SchemaNotReadyError",
    "Scope",
    "SearchHit",
    "SearchPage",
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
