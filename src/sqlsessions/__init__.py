"""sqlsessions: AI-agent conversation sessions persisted in PostgreSQL or SQLite."""

from __future__ import annotations

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
from sqlsessions.search import SearchHit, SearchPage
from sqlsessions.skill import Skill
from sqlsessions.store import Store
from sqlsessions.usage import ModelPrice

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
    "migrate",
]
