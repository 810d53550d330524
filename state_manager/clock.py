"""Time in one place: aware UTC datetimes for people, epoch milliseconds for comparisons."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def utcnow() -> datetime:
    """Now, to the millisecond: what MongoDB keeps, so a value reads back as it was written."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def iso(value: datetime) -> str:
    """ISO-8601 with an explicit UTC offset (a naive value from the database is UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat()
