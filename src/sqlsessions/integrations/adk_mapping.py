"""Where ADK's sessions and state live in sqlsessions: the ids of the state sessions, the
metadata that marks ADK's sessions, and state split by ADK's prefixes and merged back.

An ADK session ``(app_name, user_id, session_id)`` is the session ``session_id`` of owner
``user_id`` and agent ``app_name``; its user state is the session ``adk-user-state:<app>`` of
the same owner and agent, its app state the session ``adk-app-state:<app>`` of the default
owner ``''`` and agent ``app_name``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.adk.errors.input_validation_error import InputValidationError
from google.adk.sessions.state import State

from sqlsessions.errors import InvalidInputError
from sqlsessions.validation import metadata_problem

STATE_PREFIX = "state:"
"""Metadata key prefix of one state entry (``state:<key>``)."""

KIND_KEY = "adk.kind"
SESSION_KIND, APP_STATE_KIND, USER_STATE_KIND = "session", "app_state", "user_state"

USER_STATE_PREFIX, APP_STATE_PREFIX = "adk-user-state:", "adk-app-state:"
"""Id prefixes of the sessions holding user and app state (reserved: no ADK session has one)."""

APP_STATE_OWNER = ""
"""The owner of the sessions holding app state: the default owner."""


class AdkInputError(InvalidInputError, InputValidationError):
    """An argument of an ADK call is not valid: both sqlsessions' ``InvalidInputError``
    (naming the field) and ADK's ``InputValidationError`` (its bad-request error)."""


def user_state_id(app_name: str) -> str:
    """The id of the session, in the user's owner, holding a user's ``user:`` state in an app."""
    return USER_STATE_PREFIX + app_name


def app_state_id(app_name: str) -> str:
    """The id of the session, in the default owner, holding an app's ``app:`` state."""
    return APP_STATE_PREFIX + app_name


def is_reserved(session_id: str) -> bool:
    """Whether `session_id` names a state session (never an ADK session)."""
    return isinstance(session_id, str) and session_id.startswith(
        (USER_STATE_PREFIX, APP_STATE_PREFIX)
    )


def split_state(state: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(app, user, session) deltas of a state mapping; ``temp:`` keys dropped, prefixes removed."""
    app: dict[str, Any] = {}
    user: dict[str, Any] = {}
    own: dict[str, Any] = {}
    for key, value in state.items():
        if key.startswith(State.APP_PREFIX):
            app[key.removeprefix(State.APP_PREFIX)] = value
        elif key.startswith(State.USER_PREFIX):
            user[key.removeprefix(State.USER_PREFIX)] = value
        elif not key.startswith(State.TEMP_PREFIX):
            own[key] = value
    return app, user, own


def state_entries(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The state stored in a session's metadata (``state:<key>`` entries), prefix removed."""
    return {
        key.removeprefix(STATE_PREFIX): value
        for key, value in metadata.items()
        if key.startswith(STATE_PREFIX)
    }


def merge_state(
    app: Mapping[str, Any], user: Mapping[str, Any], own: Mapping[str, Any]
) -> dict[str, Any]:
    """ADK's merged view: session keys, then ``app:`` and ``user:`` keys with their prefixes."""
    merged = dict(own)
    merged.update({State.APP_PREFIX + key: value for key, value in app.items()})
    merged.update({State.USER_PREFIX + key: value for key, value in user.items()})
    return merged


def check_state(field: str, state: Mapping[str, Any]) -> None:
    """Refuse, before anything is written, a state value that cannot be stored as JSON."""
    for key, value in state.items():
        problem = metadata_problem(STATE_PREFIX + str(key), value)
        if problem is not None:
            raise InvalidInputError(f"{field}[{key}]", problem[1])
