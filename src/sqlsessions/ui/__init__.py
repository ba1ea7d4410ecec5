"""`sqlsessions ui`: a local, read-only web viewer (needs the `ui` extra).

`create_app` is imported lazily so that `import sqlsessions.ui.security` and the CLI work
without Starlette installed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def create_app(*args: Any, **kwargs: Any) -> Any:
    """The viewer's ASGI application; see `sqlsessions.ui.app.create_app`."""
    from sqlsessions.ui.app import create_app as create

    return create(*args, **kwargs)
