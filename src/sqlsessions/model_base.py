"""The models' shared base: pydantic errors as InvalidInputError, immutable values, and
instances built from values already valid (rows the store wrote) without re-checking them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StrictStr,
    ValidationError,
)
from pydantic_core import PydanticCustomError
from typing_extensions import Self

from sqlsessions.errors import InvalidInputError
from sqlsessions.validation import text_problem


def invalid(reason: str, field: str | None = None) -> PydanticCustomError:
    """A pydantic error that becomes InvalidInputError(field or its location, reason)."""
    ctx: dict[str, Any] = {"reason": reason}
    if field is not None:
        ctx["field"] = field
    return PydanticCustomError("invalid_input", "{reason}", ctx)


def _check_text(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise invalid(problem)
    return value


Text = Annotated[StrictStr, AfterValidator(_check_text)]

MAX_TOKEN_COUNT = 2**63 - 1
USAGE_KEYS = ("model", "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens")


def _check_token_count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"must be an integer number of tokens, not {type(value).__name__}")
    if not 0 <= value <= MAX_TOKEN_COUNT:
        raise invalid(f"must be between 0 and {MAX_TOKEN_COUNT}, not {value}")
    return value


TokenCount = Annotated[int, BeforeValidator(_check_token_count)]


def _dotted(loc: Sequence[int | str]) -> str:
    """('messages', 3, 'content') -> 'messages[3].content'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _to_invalid_input(exc: ValidationError, root: str) -> InvalidInputError:
    """The first error of a pydantic ValidationError as an InvalidInputError."""
    errors = exc.errors(include_url=False)
    if not errors:  # pragma: no cover - pydantic always reports at least one error
        return InvalidInputError(root, str(exc))
    first = errors[0]
    ctx = first.get("ctx") or {}
    field = ctx.get("field")
    if not isinstance(field, str):
        field = "json" if first["type"] == "json_invalid" else (_dotted(first["loc"]) or root)
    if "reason" in ctx:
        reason = str(ctx["reason"])
    elif isinstance(ctx.get("error"), InvalidInputError):
        reason = ctx["error"].reason
    else:
        reason = first["msg"]
    return InvalidInputError(field, reason)


@contextmanager
def as_invalid_input(root: str) -> Iterator[None]:
    """Turn pydantic's ValidationError into InvalidInputError naming the field."""
    try:
        yield
    except ValidationError as exc:
        raise _to_invalid_input(exc, root) from exc


class Model(BaseModel):
    """Shared base: every construction / validation raises InvalidInputError."""

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _to_invalid_input(exc, type(self).__name__.lower()) from exc

    # Tell pydantic this __init__ only wraps BaseModel's (as RootModel does), so nested models
    # are validated by pydantic-core directly and errors keep their location.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        """Validate a Python object; raises InvalidInputError naming the field."""
        with as_invalid_input(cls.__name__.lower()):
            return super().model_validate(obj, *args, **kwargs)

    @classmethod
    def model_validate_json(cls, json_data: Any, *args: Any, **kwargs: Any) -> Self:
        """Validate a JSON document; raises InvalidInputError (field "json" if it is not JSON)."""
        with as_invalid_input(cls.__name__.lower()):
            return super().model_validate_json(json_data, *args, **kwargs)

    @classmethod
    def model_validate_strings(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        """Validate string data; raises InvalidInputError naming the field."""
        with as_invalid_input(cls.__name__.lower()):
            return super().model_validate_strings(obj, *args, **kwargs)


V = TypeVar("V", bound="Value")


class Value(Model):
    """Shared base of the immutable value models (frozen, hashable, equal by value)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    def replace(self, **changes: Any) -> Self:
        """A validated copy with `changes` applied (the way to edit an immutable value).

        Raises InvalidInputError for an unknown field name or an invalid new value.
        """
        fields = type(self).model_fields
        for name in changes:
            if name not in fields:
                raise InvalidInputError(name, f"{type(self).__name__} has no such field")
        data = {name: getattr(self, name) for name in fields}
        data.update(changes)
        return type(self).model_validate(data)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """Like pydantic's, but an `update` is validated (same as :meth:`replace`)."""
        if update:
            return self.replace(**update)
        return super().model_copy(deep=deep)

    def __setattr__(self, name: str, value: Any) -> None:
        raise InvalidInputError(
            name, f"{type(self).__name__} is immutable; make a changed copy with .replace()"
        )

    def __delattr__(self, name: str) -> None:
        raise InvalidInputError(
            name, f"{type(self).__name__} is immutable; make a changed copy with .replace()"
        )


def trusted(cls: type[V], state: dict[str, Any]) -> V:
    """An instance of `cls` holding `state` (every field, already valid): what `model_construct`
    does, minus its per-field defaults and bookkeeping, which dominate loading long sessions."""
    return trusted_values(cls, (state,))[0]


_FIELD_NAMES: dict[type[Any], frozenset[str]] = {}


def trusted_values(cls: type[V], states: Iterable[dict[str, Any]]) -> list[V]:
    """An instance of `cls` for each of `states` (each one every field of `cls`, already valid,
    e.g. rows the store wrote), built in one loop: a long session's load builds thousands."""
    fields = _FIELD_NAMES.get(cls)
    if fields is None:
        fields = _FIELD_NAMES[cls] = frozenset(cls.model_fields)
    new = cls.__new__
    # The models refuse assignment; this is construction. Each attribute is set through its
    # slot's descriptor, found once, rather than looked up on every object.
    set_dict = object.__setattr__
    set_fields, set_extra, set_private = _SLOT_SETTERS
    values: list[V] = []
    append = values.append
    for state in states:
        value = new(cls)
        set_dict(value, "__dict__", state)
        set_fields(value, set(fields))
        set_extra(value, None)
        set_private(value, None)
        append(value)
    return values


_SLOT_SETTERS = tuple(
    BaseModel.__dict__[name].__set__
    for name in ("__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")
)
