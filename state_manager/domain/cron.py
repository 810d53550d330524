"""Cron expressions for graph triggers, always evaluated in UTC.

There is no catch-up of missed occurrences: a caller scheduling the next fire passes
``max(previous_fire, now)`` to :func:`next_fire_after`, so a server that was down fires once, not
once per missed tick.
"""

from __future__ import annotations

from datetime import UTC, datetime

from croniter import croniter


class CronError(ValueError):
    """A cron expression is not valid."""


def validate_expression(expr: str) -> str:
    """Return ``expr`` trimmed, or raise :class:`CronError` if it is not a valid cron expression."""
    trimmed = expr.strip()
    if not trimmed or not croniter.is_valid(trimmed):
        raise CronError(f"Invalid cron expression: {expr!r}")
    return trimmed


def next_fire_after(expr: str, after: datetime) -> datetime:
    """The first occurrence of ``expr`` strictly after ``after`` (an aware datetime), in UTC."""
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError(f"next_fire_after needs an aware datetime, got naive {after.isoformat()}")
    start = after.astimezone(UTC)
    following: datetime = croniter(validate_expression(expr), start).get_next(datetime)
    return following.astimezone(UTC)
