"""`python -m sqlsessions.cli`: the same as the `sqlsessions` command."""

from __future__ import annotations

from sqlsessions.cli import main

main()
