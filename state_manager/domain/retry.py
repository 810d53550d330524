"""Retry policy arithmetic: how long a failed state waits before its next attempt.

Every strategy is a base curve (exponential, linear or fixed) with an optional jitter, in
milliseconds, ``b`` being ``backoff_factor``, ``e`` ``exponent`` and ``n`` the retry number (n >= 1):

====================  ===============  ==============================
base curve            no jitter        full / equal jitter
====================  ===============  ==============================
EXPONENTIAL           b * e**(n-1)     U(0, base) / base/2 + U(0, base/2)
LINEAR                b * n            U(0, base) / base/2 + U(0, base/2)
FIXED                 b                U(0, base) / base/2 + U(0, base/2)
====================  ===============  ==============================

The result is truncated to an int and capped at ``max_delay`` when it is set.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from enum import Enum

from state_manager.domain.models import RetryPolicy, RetryStrategy

# A bound on the base delay (about 31,700 years) so huge exponents never overflow a float draw.
_MAX_BASE_MS = 10**15


class _Curve(Enum):
    EXPONENTIAL = "EXPONENTIAL"
    LINEAR = "LINEAR"
    FIXED = "FIXED"


class _Jitter(Enum):
    NONE = "NONE"
    FULL = "FULL"
    EQUAL = "EQUAL"


_SHAPES: dict[RetryStrategy, tuple[_Curve, _Jitter]] = {
    RetryStrategy.EXPONENTIAL: (_Curve.EXPONENTIAL, _Jitter.NONE),
    RetryStrategy.EXPONENTIAL_FULL_JITTER: (_Curve.EXPONENTIAL, _Jitter.FULL),
    RetryStrategy.EXPONENTIAL_EQUAL_JITTER: (_Curve.EXPONENTIAL, _Jitter.EQUAL),
    RetryStrategy.LINEAR: (_Curve.LINEAR, _Jitter.NONE),
    RetryStrategy.LINEAR_FULL_JITTER: (_Curve.LINEAR, _Jitter.FULL),
    RetryStrategy.LINEAR_EQUAL_JITTER: (_Curve.LINEAR, _Jitter.EQUAL),
    RetryStrategy.FIXED: (_Curve.FIXED, _Jitter.NONE),
    RetryStrategy.FIXED_FULL_JITTER: (_Curve.FIXED, _Jitter.FULL),
    RetryStrategy.FIXED_EQUAL_JITTER: (_Curve.FIXED, _Jitter.EQUAL),
}


def retry_delay_ms(
    policy: RetryPolicy, attempt: int, rand: Callable[[float, float], float] = random.uniform
) -> int:
    """Delay in ms before retry number ``attempt`` (1 for the first retry).

    ``rand(low, high)`` draws the jitter; pass a deterministic function in tests.
    """
    if attempt < 1:
        raise ValueError(f"Retry attempt must be at least 1, got {attempt}")
    curve, jitter = _SHAPES[policy.strategy]
    base = min(_base_delay(curve, policy, attempt), _MAX_BASE_MS)
    if jitter is _Jitter.FULL:
        delay = int(rand(0, base))
    elif jitter is _Jitter.EQUAL:
        delay = int(base / 2 + rand(0, base / 2))
    else:
        delay = base
    return delay if policy.max_delay is None else min(delay, policy.max_delay)


def retries_left(policy: RetryPolicy, retry_count: int) -> bool:
    """Whether a state that has already been retried ``retry_count`` times may be retried again."""
    return retry_count < policy.max_retries


def _base_delay(curve: _Curve, policy: RetryPolicy, attempt: int) -> int:
    if curve is _Curve.EXPONENTIAL:
        return int(policy.backoff_factor * policy.exponent ** (attempt - 1))
    if curve is _Curve.LINEAR:
        return policy.backoff_factor * attempt
    return policy.backoff_factor
