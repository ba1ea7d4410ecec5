"""RFC 3339 timestamps as the Go package writes them (RFC3339Nano), always UTC in Python."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_UTC = timezone.utc

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))?"
)


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 timestamp as Go writes it into an aware UTC datetime.

    Accepts nanosecond fractions (truncated to microseconds), ``Z`` and ``±HH:MM`` offsets;
    a timestamp without an offset is taken as UTC. Raises ValueError when `text` is not one.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.group(1, 2, 3, 4, 5, 6))
    fraction = match.group(7) or ""
    microsecond = int((fraction[:6]).ljust(6, "0"))
    tz = _UTC
    if match.group(9) is not None:
        offset = timedelta(hours=int(match.group(10)), minutes=int(match.group(11)))
        if offset >= timedelta(hours=24):
            raise ValueError(f"offset out of range in {text!r}")
        tz = timezone(-offset if match.group(9) == "-" else offset)
    try:
        value = datetime(year, month, day, hour, minute, second, microsecond, tzinfo=tz)
        return value.astimezone(_UTC)
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"not a valid timestamp: {text!r} ({exc})") from None


def format_timestamp(value: datetime) -> str:
    """Format like Go's RFC3339Nano in UTC: ``2026-11-24T21:59:03.1234Z`` (naive means UTC)."""
    value = value.replace(tzinfo=_UTC) if value.tzinfo is None else value.astimezone(_UTC)
    text = (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
        f"T{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )
    if value.microsecond:
        text += "." + f"{value.microsecond:06d}".rstrip("0")
    return text + "Z"
