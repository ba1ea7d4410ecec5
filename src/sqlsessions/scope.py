"""Scope: whose sessions a store sees (an owner, and optionally one agent of that owner).

A session's identity is (owner, id). A store works in one scope: the root store in the
default owner ``''``, a view made by ``store.scoped(owner=..., agent_id=...)`` in its own.
Inside a scope, a session of another owner (or, with ``agent_id``, of another agent of the
owner) is absent: reads find nothing, get-or-create makes the scope's own session, delete
is a no-op, and nothing outside the scope is ever read, overwritten or deleted. The owner
is the isolation boundary: agents of one owner share its id space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlsessions.errors import InvalidInputError
from sqlsessions.validation import MAX_SESSION_ID_LENGTH, check_owner, check_text


@dataclass(frozen=True)
class Scope:
    """An owner (``''``: the default owner) and, optionally, one agent within it."""

    owner: str = ""
    agent_id: str | None = None

    def __post_init__(self) -> None:
        check_owner(self.owner)
        if self.agent_id is not None:
            check_text(self.agent_id, "agent_id", MAX_SESSION_ID_LENGTH)
            if not self.agent_id:
                raise InvalidInputError(
                    "agent_id", "must not be empty (None: every agent of the owner)"
                )

    @property
    def params(self) -> dict[str, Any]:
        """The bind parameters every scoped statement takes (``scope_agent`` '' = any agent)."""
        return {"scope_owner": self.owner, "scope_agent": self.agent_id or ""}

    @property
    def new_session_agent(self) -> str:
        """The agent_id a session created in this scope gets."""
        return self.agent_id or ""

    def narrowed(self, owner: str | None, agent_id: str | None, *, root: bool) -> Scope:
        """The scope of a view made from this one: anything from the root store; from a view,
        only the same owner, with an agent added if this scope had none."""
        wanted = Scope(
            self.owner if owner is None else owner,
            self.agent_id if agent_id is None else agent_id,
        )
        if root:
            return wanted
        if wanted.owner != self.owner:
            raise InvalidInputError(
                "owner", "a scoped store can only narrow its scope: it cannot change the owner"
            )
        if self.agent_id is not None and wanted.agent_id != self.agent_id:
            raise InvalidInputError(
                "agent_id",
                "a scoped store can only narrow its scope: it cannot change its agent",
            )
        return wanted

    def check_session(self, owner: Any, agent_id: Any) -> None:
        """InvalidInputError (naming the field) unless a session's owner and agent are this
        scope's: a session is saved only into its own scope."""
        if owner != self.owner:
            raise InvalidInputError(
                "owner", f"is {owner!r} but this store's scope is owner {self.owner!r}"
            )
        if self.agent_id is not None and agent_id != self.agent_id:
            raise InvalidInputError(
                "agent_id", f"is {agent_id!r} but this store's scope is agent {self.agent_id!r}"
            )


ROOT_SCOPE = Scope()
"""The scope of a store that was not scoped: the default owner, every agent."""
