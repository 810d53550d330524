"""Cron expressions: validation and the next fire time, always in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from state_manager.domain.cron import CronError, next_fire_after, validate_expression


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("* * * * *", "* * * * *"),
        ("  */5 * * * *\n", "*/5 * * * *"),
        ("0 9 * * 1-5", "0 9 * * 1-5"),
        ("@daily", "@daily"),
    ],
)
def test_valid_expressions_are_returned_trimmed(expr: str, expected: str) -> None:
    assert validate_expression(expr) == expected


@pytest.mark.parametrize(
    "expr", ["", "   ", "* * * *", "61 * * * *", "* * 32 * *", "not a cron", "@sometimes"]
)
def test_invalid_expressions_are_refused_with_the_expression(expr: str) -> None:
    with pytest.raises(CronError, match="Invalid cron expression") as info:
        validate_expression(expr)
    assert repr(expr) in str(info.value)


def test_cron_error_is_a_value_error() -> None:
    assert issubclass(CronError, ValueError)


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("*/5 * * * *", datetime(2024, 1, 1, 0, 3, 20, tzinfo=UTC), datetime(2024, 1, 1, 0, 5, tzinfo=UTC)),
        ("*/5 * * * *", datetime(2024, 1, 1, 0, 5, tzinfo=UTC), datetime(2024, 1, 1, 0, 10, tzinfo=UTC)),
        ("0 0 * * *", datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)),
        ("0 0 * * *", datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC)),
    ],
)
def test_next_fire_is_strictly_after(expr: str, after: datetime, expected: datetime) -> None:
    fire = next_fire_after(expr, after)
    assert fire == expected
    assert fire.utcoffset() == timedelta(0)


def test_cron_is_evaluated_in_utc_whatever_the_input_offset() -> None:
    paris_morning = datetime(2024, 6, 1, 10, 30, tzinfo=timezone(timedelta(hours=2)))  # 08:30 UTC
    fire = next_fire_after("0 9 * * *", paris_morning)
    assert fire == datetime(2024, 6, 1, 9, 0, tzinfo=UTC)
    assert fire.tzinfo == UTC


def test_expression_is_trimmed_before_use() -> None:
    assert next_fire_after("  0 * * * * ", datetime(2024, 1, 1, 5, 1, tzinfo=UTC)) == datetime(
        2024, 1, 1, 6, tzinfo=UTC
    )


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        next_fire_after("* * * * *", datetime(2024, 1, 1))  # noqa: DTZ001


def test_invalid_expression_is_refused_when_scheduling() -> None:
    with pytest.raises(CronError, match="Invalid cron expression"):
        next_fire_after("every minute", datetime(2024, 1, 1, tzinfo=UTC))
