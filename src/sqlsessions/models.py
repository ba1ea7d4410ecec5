"""Domain models: Role, ToolFunction, ToolCall, Message and Session (pydantic v2, no database).

The JSON form is the one the Go `sessions` package writes and reads:

* ``Message``: keys ``role``, ``content`` (always written), ``name``, ``tool_call_id`` and
  ``tool_calls`` (omitted when empty);
* ``Session``: keys ``id``, ``agent_id`` and ``owner`` (each omitted when empty), ``messages``
  (always written),
  ``created_at``, ``updated_at`` (RFC 3339, UTC, like Go's RFC3339Nano) and ``metadata``
  (omitted when empty).

``ToolFunction``, ``ToolCall`` and ``Message`` are immutable values (frozen, hashable, equal by
value). Change a message by replacing it with a validated copy::

    s.messages[3] = s.messages[3].replace(content="x")

Every construction or load path raises :class:`~sqlsessions.errors.InvalidInputError` naming the
offending field (``content``, ``messages[3].content``, ``metadata[channel]``...), never
pydantic's ``ValidationError``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError
from typing_extensions import Self

from sqlsessions.errors import InvalidInputError
from sqlsessions.message_list import MessageList
from sqlsessions.model_base import (
    USAGE_KEYS,
    Model,
    Text,
    TokenCount,
    Value,
    invalid,
    trusted,
)
from sqlsessions.timestamps import format_timestamp, parse_timestamp
from sqlsessions.validation import (
    CHAT_KIND,
    MAX_KIND_LENGTH,
    MAX_SESSION_ID_LENGTH,
    check_metadata_entry,
    check_owner,
    check_session_id,
    check_text,
    check_timestamp,
    json_copy,
    json_text,
    json_value_problem,
    metadata_problem,
    valid_json_copy,
)

__all__ = [
    "MAX_SESSION_ID_LENGTH",
    "Message",
    "MessageList",
    "Role",
    "Session",
    "ToolCall",
    "ToolFunction",
    "check_metadata_entry",
    "check_session_fields",
    "check_session_id",
    "check_text",
    "format_timestamp",
    "json_copy",
    "parse_timestamp",
]

_UTC = timezone.utc


def _now() -> datetime:
    """The current time, timezone-aware UTC (the one clock every method bumps with)."""
    return datetime.now(_UTC)


# --------------------------------------------------------------------------- values


class Role(str, Enum):
    """Who wrote a message; a str, so ``Role.USER == "user"``."""

    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"

    def __str__(self) -> str:
        return str(self.value)


_ROLE_NAMES = ", ".join(role.value for role in Role)


def _coerce_role(value: Any) -> Role:
    if isinstance(value, Role):
        return value
    if isinstance(value, str):
        try:
            return Role(value)
        except ValueError:
            raise invalid(f"unknown role {value!r}; expected one of {_ROLE_NAMES}") from None
    raise invalid(f"must be a string, one of {_ROLE_NAMES}; got {type(value).__name__}")


_Role = Annotated[Role, BeforeValidator(_coerce_role)]


class ToolFunction(Value):
    """The function a tool call invokes; `arguments` is a JSON document kept as a string."""

    name: Text
    arguments: Text


class ToolCall(Value):
    """A tool call requested by an assistant message."""

    id: Text
    type: Text = "function"
    function: ToolFunction

    @classmethod
    def from_trusted(cls, id: str, type: str, name: str, arguments: str) -> ToolCall:
        """A tool call from values the store wrote, not re-checked (see `Message.from_trusted`)."""
        function = trusted(ToolFunction, {"name": name, "arguments": arguments})
        return trusted(cls, {"id": id, "type": type, "function": function})


def _check_kind(value: str) -> str:
    if not value:
        raise invalid("must not be empty")
    if len(value) > MAX_KIND_LENGTH:
        raise invalid(f"is longer than {MAX_KIND_LENGTH} characters ({len(value)})")
    return value


def _check_item(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid(f"must be a JSON object (a dict), not {type(value).__name__}")
    copy = valid_json_copy(value)
    if copy is not None:
        return copy
    problem = json_value_problem(value)
    if problem is not None:
        raise invalid(problem)
    return json_copy(value)


class Message(Value):
    """One message of a conversation (immutable; edit with :meth:`replace`).

    ``name`` and ``tool_call_id`` given as ``""`` and ``tool_calls`` given as ``[]`` are stored
    as None, as they are omitted from JSON either way; a list of tool calls is kept as a tuple.

    Beyond the Go package's fields, a message may carry a framework's original item:
    ``item`` (a JSON object, kept verbatim; a deep copy is taken), ``item_format`` (the name of
    its format, e.g. ``"openai-agents"``) and ``kind`` (``"message"`` for a chat message;
    another kind, e.g. ``"reasoning"``, for an item that is not one: the analytics views do not
    count it as a message). In JSON the three keys are omitted when empty (``kind`` when it is
    ``"message"``); the Go package ignores them.
    """

    role: _Role
    content: Text = ""
    name: Text | None = None
    tool_call_id: Text | None = None
    tool_calls: tuple[ToolCall, ...] | None = None
    kind: Annotated[Text, AfterValidator(_check_kind)] = CHAT_KIND
    item_format: Text | None = None
    item: Annotated[dict[str, Any] | None, BeforeValidator(_check_item)] = None
    # Usage, when the provider reported it (filled by `append`/`save` callers and adapters).
    # input_tokens counts every prompt token, cached ones included; output_tokens every
    # generated token, reasoning ones included. Omitted from JSON when None.
    model: Text | None = None
    input_tokens: TokenCount | None = None
    output_tokens: TokenCount | None = None
    cached_tokens: TokenCount | None = None
    reasoning_tokens: TokenCount | None = None

    @classmethod
    def from_trusted(
        cls,
        role: Role,
        content: str,
        name: str | None,
        tool_call_id: str | None,
        tool_calls: tuple[ToolCall, ...] | None,
        kind: str,
        item_format: str | None,
        item: dict[str, Any] | None,
        usage: Sequence[Any] = (),
    ) -> Message:
        """A message from values already validated (rows the store wrote), not re-checked.

        What `model_construct` does, minus its per-field bookkeeping: loading a long
        conversation builds one message per row, and that bookkeeping was most of the cost.
        """
        model = input_tokens = output_tokens = cached_tokens = reasoning_tokens = None
        if usage:
            model, input_tokens, output_tokens, cached_tokens, reasoning_tokens = usage
        state = {
            "role": role,
            "content": content,
            "name": name,
            "tool_call_id": tool_call_id,
            "tool_calls": tool_calls,
            "kind": kind,
            "item_format": item_format,
            "item": item,
            "model": model,  # then the token counts, in USAGE_KEYS order
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cached_tokens": cached_tokens,
            "reasoning_tokens": reasoning_tokens,
        }
        return trusted(cls, state)

    @property
    def is_chat(self) -> bool:
        """True for a chat message (kind ``"message"``), False for any other framework item."""
        return self.kind == CHAT_KIND

    def __hash__(self) -> int:
        item = None if self.item is None else json_text(self.item)
        return hash(
            (
                self.role,
                self.content,
                self.name,
                self.tool_call_id,
                self.tool_calls,
                self.kind,
                self.item_format,
                item,
                self.model,
                self.input_tokens,
                self.output_tokens,
            )
        )

    @field_validator("content", mode="before")
    @classmethod
    def _null_content_is_empty(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("name", "tool_call_id", "model", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("tool_calls", mode="before")
    @classmethod
    def _no_calls_is_none(cls, value: Any) -> Any:
        if value is None or (isinstance(value, (list, tuple)) and len(value) == 0):
            return None
        return value

    @model_serializer(mode="wrap")
    def _go_form(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if info.mode_is_json():
            for key in ("name", "tool_call_id", "tool_calls", "item_format", "item"):
                if not data.get(key):
                    data.pop(key, None)
            if data.get("kind") == CHAT_KIND:
                del data["kind"]
            for key in USAGE_KEYS:
                if data.get(key) is None:
                    data.pop(key, None)
        return data


# --------------------------------------------------------------------------- timestamps


def _timestamp_in(value: Any) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = parse_timestamp(value)
        except ValueError as exc:
            raise invalid(str(exc)) from None
    else:
        raise invalid(
            f"must be an RFC 3339 timestamp string or a datetime, not {type(value).__name__}"
        )
    if moment.tzinfo is None:
        return moment.replace(tzinfo=_UTC)
    try:
        return moment.astimezone(_UTC)
    except OverflowError:
        raise invalid("is out of range once converted to UTC") from None


_Timestamp = Annotated[
    datetime,
    BeforeValidator(_timestamp_in),
    PlainSerializer(format_timestamp, return_type=str, when_used="json"),
]


# --------------------------------------------------------------------------- session


def check_session_fields(session: Session) -> None:
    """Re-check the fields of a session that callers may have assigned directly
    (assignment is not validated); messages and metadata are checked where they are written."""
    check_session_id(session.id)
    check_text(session.agent_id, "agent_id", MAX_SESSION_ID_LENGTH)
    check_owner(session.owner)
    for name in ("created_at", "updated_at"):
        check_timestamp(getattr(session, name), name)


class Session(Model):
    """A conversation session: messages plus metadata, with the Go package's methods.

    Mutable; every changing method bumps ``updated_at``. ``metadata`` is a plain dict whose
    values must be JSON values; treat nested values as values (they are stored as given, not
    copied). JSON lists in metadata load back as lists (a tuple does not round-trip as a tuple).
    """

    model_config = ConfigDict(extra="ignore", validate_assignment=False)

    id: Text
    agent_id: Text = ""
    owner: Text = ""
    """Whose session this is (tenant/user); '' is the default owner. Ids are unique per owner."""
    messages: list[Message] = Field(default_factory=MessageList)
    created_at: _Timestamp = Field(default_factory=_now)
    updated_at: _Timestamp = Field(default_factory=_now)
    metadata: dict[str, Any] = Field(default_factory=dict)

    # Opaque to the domain: the store attaches what it last read or wrote for this object,
    # so that a save writes only the difference (and detects concurrent writers).
    _stored: Any = PrivateAttr(default=None)

    @property
    def version(self) -> int | None:
        """The stored version this object was loaded or last saved at (None: never stored);
        pass it as `expected_version` to `store.replace_history`."""
        version = getattr(self._stored, "version", None)
        return version if isinstance(version, int) else None

    @model_validator(mode="before")
    @classmethod
    def _default_timestamps(cls, data: Any) -> Any:
        """Missing (or null) timestamps: the other one if given, else one shared `now`."""
        if not isinstance(data, dict):
            return data
        created, updated = data.get("created_at"), data.get("updated_at")
        if created is not None and updated is not None:
            return data
        data = dict(data)
        if created is None and updated is None:
            data["created_at"] = data["updated_at"] = _now()
            return data
        given = created if created is not None else updated
        try:
            default = _timestamp_in(given)
        except PydanticCustomError:  # the given one fails validation under its own name
            default = _now()
        data["created_at" if created is None else "updated_at"] = default
        return data

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not value:
            raise invalid("must not be empty")
        if len(value) > MAX_SESSION_ID_LENGTH:
            raise invalid(f"is longer than {MAX_SESSION_ID_LENGTH} characters ({len(value)})")
        return value

    @field_validator("agent_id", "owner", mode="before")
    @classmethod
    def _null_agent_is_empty(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("agent_id", "owner")
    @classmethod
    def _agent_id_fits(cls, value: str) -> str:
        if len(value) > MAX_SESSION_ID_LENGTH:
            raise invalid(f"is longer than {MAX_SESSION_ID_LENGTH} characters ({len(value)})")
        return value

    @field_validator("messages", mode="before")
    @classmethod
    def _null_messages_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("messages", mode="after")
    @classmethod
    def _tracked_messages(cls, value: list[Message]) -> list[Message]:
        return value if isinstance(value, MessageList) else MessageList(value)

    @field_validator("metadata", mode="before")
    @classmethod
    def _check_metadata(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise invalid(f"must be a mapping of string keys, not {type(value).__name__}")
        for key, inner in value.items():
            problem = metadata_problem(key, inner)
            if problem is not None:
                raise invalid(problem[1], field=problem[0])
        return dict(value)

    @model_serializer(mode="wrap")
    def _go_form(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if info.mode_is_json():
            for key in ("agent_id", "owner", "metadata"):
                if not data.get(key):
                    data.pop(key, None)
        return data

    # -- construction and JSON

    @classmethod
    def new(cls, id: str, agent_id: str = "", *, owner: str = "") -> Self:
        """A new session (Go's NewSession): no messages, no metadata, both timestamps now."""
        now = _now()
        return cls(id=id, agent_id=agent_id, owner=owner, created_at=now, updated_at=now)

    def to_json(self) -> str:
        """The session as compact JSON in the Go package's form (same as model_dump_json())."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, data: str | bytes | bytearray) -> Self:
        """Load a session from JSON in the Go package's form; raises InvalidInputError."""
        return cls.model_validate_json(data)

    # -- messages

    def _bump(self) -> None:
        self.updated_at = _now()

    def _append(self, message: Message) -> Message:
        self.messages.append(message)
        self._bump()
        return message

    def add_message(self, role: Role | str, content: str) -> Message:
        """Append a message and bump updated_at; returns the new message."""
        return self._append(Message(role=role, content=content))

    def add_message_with_tool_calls(
        self, role: Role | str, content: str, tool_calls: Sequence[ToolCall] | None
    ) -> Message:
        """Append a message carrying tool calls and bump updated_at; returns the new message."""
        calls = None if tool_calls is None else tuple(tool_calls)
        return self._append(Message(role=role, content=content, tool_calls=calls))

    def add_tool_result(self, tool_call_id: str, content: str) -> Message:
        """Append a `tool` message answering `tool_call_id` and bump updated_at."""
        return self._append(Message(role=Role.TOOL, content=content, tool_call_id=tool_call_id))

    def get_messages(self) -> list[Message]:
        """A new list of the messages (changing it does not change the session)."""
        return list(self.messages)

    def clear(self) -> None:
        """Drop every message and bump updated_at."""
        self.messages.clear()
        self._bump()

    def trim(self, n: int) -> None:
        """Keep only the last `n` messages (all of them if there are fewer); bump updated_at."""
        if isinstance(n, bool) or not isinstance(n, int):
            raise InvalidInputError("n", f"must be an integer, not {type(n).__name__}")
        if n < 0:
            raise InvalidInputError("n", f"must not be negative ({n})")
        del self.messages[: max(0, len(self.messages) - n)]
        self._bump()

    # -- metadata

    def set_metadata(self, key: str, value: Any) -> None:
        """Set a metadata entry (`value` must be a JSON value) and bump updated_at."""
        problem = metadata_problem(key, value)
        if problem is not None:
            raise InvalidInputError(*problem)
        self.metadata[key] = value
        self._bump()

    def get_metadata(self, key: str) -> tuple[Any, bool]:
        """(value, True) if `key` is set, else (None, False)."""
        if key in self.metadata:
            return self.metadata[key], True
        return None, False
