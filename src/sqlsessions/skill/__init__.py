"""The sessions Skill: tools an agent calls to read and manage its sessions (SPEC §1, §11)."""

from __future__ import annotations

from sqlsessions.skill.skill import AsyncToolHandler, Skill, Tool, ToolHandler
from sqlsessions.skill.specs import (
    DEFAULT_HISTORY_LIMIT,
    DEFAULT_LIST_LIMIT,
    MAX_HISTORY_LIMIT,
    MAX_LIST_LIMIT,
    MAX_METADATA_KEY_LENGTH,
    MAX_METADATA_VALUE_LENGTH,
)

__all__ = [
    "DEFAULT_HISTORY_LIMIT",
    "DEFAULT_LIST_LIMIT",
    "MAX_HISTORY_LIMIT",
    "MAX_LIST_LIMIT",
    "MAX_METADATA_KEY_LENGTH",
    "MAX_METADATA_VALUE_LENGTH",
    "AsyncToolHandler",
    "Skill",
    "Tool",
    "ToolHandler",
]
