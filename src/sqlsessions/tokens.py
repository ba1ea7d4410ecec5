"""Unique tokens (append keys, session incarnations) made without a system call each.

`secrets.token_hex` asks the kernel for randomness on every call; measured inside a save or
an append on this project's VMs that system call cost 8-10 us, more than the rest of the
Python an append runs. A token needs to be unique, not secret: a random 64-bit prefix drawn
once per process (and again in a forked child) followed by a counter is.
"""

from __future__ import annotations

import itertools
import os


class _TokenSource:
    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


_source = _TokenSource()
if hasattr(os, "register_at_fork"):  # a forked child must not repeat its parent's tokens
    os.register_at_fork(after_in_child=_source.restart)


def new_token() -> str:
    """32 hex characters no other call (in any process) returns."""
    return _source.next()
