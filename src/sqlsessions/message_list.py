"""MessageList: a list of messages that knows how much of it is unchanged since a checkpoint."""

from __future__ import annotations

from typing import Any


class MessageList(list):  # type: ignore[type-arg]
    """A session's list of messages that remembers how much of it is unchanged.

    `mark_clean(token)` records a checkpoint; afterwards `unchanged_prefix(token)` tells how
    many leading messages no assignment, deletion, insertion or reordering has touched
    (appends keep the prefix). Whoever checkpoints it (the store) can then find what was
    appended without comparing the whole list. Behaves exactly like a list otherwise.
    """

    _clean_upto: int = 0
    _token: object = None

    def mark_clean(self, token: object) -> None:
        """Checkpoint: the whole current list is unchanged as of `token`."""
        self._clean_upto = len(self)
        self._token = token

    def retoken(self, old: object, new: object) -> None:
        """Move the checkpoint taken as `old` to `new`, keeping what changed since."""
        if self._token is old:
            self._token = new

    def unchanged_prefix(self, token: object) -> int:
        """How many leading messages are untouched since `mark_clean(token)` (0 if not ours)."""
        return self._clean_upto if token is self._token else 0

    def _changed_from(self, index: Any) -> None:
        if isinstance(index, slice):
            start = index.indices(len(self))[0]
            if index.step is not None and index.step < 0:
                start = 0
        else:
            start = index + len(self) if index < 0 else index
        self._clean_upto = max(0, min(self._clean_upto, start))

    def __setitem__(self, index: Any, value: Any) -> None:
        self._changed_from(index)
        super().__setitem__(index, value)

    def __delitem__(self, index: Any) -> None:
        self._changed_from(index)
        super().__delitem__(index)

    def insert(self, index: Any, value: Any) -> None:
        self._changed_from(min(index, len(self)) if index >= 0 else index)
        super().insert(index, value)

    def pop(self, index: Any = -1) -> Any:
        self._changed_from(index)
        return super().pop(index)

    def remove(self, value: Any) -> None:
        self._changed_from(self.index(value))
        super().remove(value)

    def clear(self) -> None:
        self._clean_upto = 0
        super().clear()

    def sort(self, *args: Any, **kwargs: Any) -> None:
        self._clean_upto = 0
        super().sort(*args, **kwargs)

    def reverse(self) -> None:
        self._clean_upto = 0
        super().reverse()

    def __imul__(self, n: Any) -> Any:  # type: ignore[misc]
        if n < 1:  # repeating keeps the prefix; zero or less clears the list
            self._clean_upto = 0
        return super().__imul__(n)
