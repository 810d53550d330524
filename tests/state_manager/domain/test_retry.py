"""Retry delays for every strategy, jitter bounds, the max_delay cap and the retry budget."""

from __future__ import annotations

import pytest

from state_manager.domain.models import RetryPolicy, RetryStrategy
from state_manager.domain.retry import retries_left, retry_delay_ms


def policy(strategy: RetryStrategy, **overrides: int | None) -> RetryPolicy:
    values: dict[str, object] = {"strategy": strategy, "backoff_factor": 1000, "exponent": 3}
    values.update(overrides)
    return RetryPolicy.model_validate(values)


def highest(low: float, high: float) -> float:
    return high


def lowest(low: float, high: float) -> float:
    return low


@pytest.mark.parametrize(
    ("strategy", "delays"),
    [
        (RetryStrategy.EXPONENTIAL, [1000, 3000, 9000, 27000]),
        (RetryStrategy.LINEAR, [1000, 2000, 3000, 4000]),
        (RetryStrategy.FIXED, [1000, 1000, 1000, 1000]),
    ],
)
def test_deterministic_strategies(strategy: RetryStrategy, delays: list[int]) -> None:
    assert [retry_delay_ms(policy(strategy), n) for n in (1, 2, 3, 4)] == delays


def test_default_policy_is_exponential_from_two_seconds() -> None:
    assert [retry_delay_ms(RetryPolicy(), n) for n in (1, 2, 3)] == [2000, 4000, 8000]


@pytest.mark.parametrize(
    ("strategy", "attempt", "base"),
    [
        (RetryStrategy.EXPONENTIAL_FULL_JITTER, 3, 9000),
        (RetryStrategy.LINEAR_FULL_JITTER, 3, 3000),
        (RetryStrategy.FIXED_FULL_JITTER, 3, 1000),
    ],
)
def test_full_jitter_draws_between_zero_and_base(strategy: RetryStrategy, attempt: int, base: int) -> None:
    draws: list[tuple[float, float]] = []

    def record(low: float, high: float) -> float:
        draws.append((low, high))
        return high

    assert retry_delay_ms(policy(strategy), attempt, record) == base
    assert draws == [(0, base)]
    assert retry_delay_ms(policy(strategy), attempt, lowest) == 0


@pytest.mark.parametrize(
    ("strategy", "attempt", "base"),
    [
        (RetryStrategy.EXPONENTIAL_EQUAL_JITTER, 2, 3000),
        (RetryStrategy.LINEAR_EQUAL_JITTER, 2, 2000),
        (RetryStrategy.FIXED_EQUAL_JITTER, 2, 1000),
    ],
)
def test_equal_jitter_is_half_base_plus_draw_up_to_half(
    strategy: RetryStrategy, attempt: int, base: int
) -> None:
    assert retry_delay_ms(policy(strategy), attempt, lowest) == base // 2
    assert retry_delay_ms(policy(strategy), attempt, highest) == base


def test_jitter_result_is_truncated_to_int() -> None:
    odd = policy(RetryStrategy.FIXED_EQUAL_JITTER, backoff_factor=1001)
    assert retry_delay_ms(odd, 1, lowest) == 500
    assert retry_delay_ms(policy(RetryStrategy.FIXED_FULL_JITTER), 1, lambda low, high: 999.9) == 999


@pytest.mark.parametrize("strategy", list(RetryStrategy))
def test_every_strategy_is_capped_by_max_delay(strategy: RetryStrategy) -> None:
    capped = policy(strategy, backoff_factor=5000, max_delay=1500)
    assert retry_delay_ms(capped, 4, highest) == 1500


@pytest.mark.parametrize("strategy", list(RetryStrategy))
def test_max_delay_does_not_raise_short_delays(strategy: RetryStrategy) -> None:
    roomy = policy(strategy, max_delay=10**9)
    assert retry_delay_ms(roomy, 2, highest) == retry_delay_ms(policy(strategy), 2, highest)


@pytest.mark.parametrize("strategy", list(RetryStrategy))
def test_default_random_stays_within_bounds(strategy: RetryStrategy) -> None:
    upper = retry_delay_ms(policy(strategy), 3, highest)
    lower = retry_delay_ms(policy(strategy), 3, lowest)
    delays = {retry_delay_ms(policy(strategy), 3) for _ in range(200)}
    assert all(lower <= delay <= upper for delay in delays)


def test_huge_attempts_do_not_overflow_jitter() -> None:
    delay = retry_delay_ms(policy(RetryStrategy.EXPONENTIAL_FULL_JITTER, max_delay=60_000), 5000)
    assert 0 <= delay <= 60_000


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempt_numbers_start_at_one(attempt: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        retry_delay_ms(RetryPolicy(), attempt)


@pytest.mark.parametrize(
    ("max_retries", "retry_count", "expected"),
    [(3, 0, True), (3, 2, True), (3, 3, False), (3, 4, False), (0, 0, False)],
)
def test_retries_left(max_retries: int, retry_count: int, expected: bool) -> None:
    assert retries_left(RetryPolicy(max_retries=max_retries), retry_count) is expected
