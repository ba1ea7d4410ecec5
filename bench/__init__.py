"""The sqlsessions benchmark: every SPEC §7 target, measured next to its baseline.

Run it with ``python -m bench`` (see ``bench/README.md``).
"""
