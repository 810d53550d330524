"""Leases that tune themselves, for clients that never heartbeat (the official SDKs).

Such a client holds a state for as long as its lease says; a dead one is noticed only when the
lease runs out. A fixed lease long enough for the slowest node makes every dead worker cost that
long. Instead, once a node has enough observed running times, its lease is a multiple of their
p99, never below a floor and never above the configured lease. A report that comes after its
tuned lease ran out (the node was slow, not dead) grows the node's lease so that it does not
happen again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LeasePolicy:
    multiplier: float
    floor_ms: int
    cap_ms: int
    min_samples: int


def p99(samples: Sequence[int]) -> int:
    """The 99th percentile (nearest rank) of running times in ms."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def tuned_lease_ms(policy: LeasePolicy, samples: Sequence[int], grown_ms: int = 0) -> int | None:
    """The lease for a node with these running times, or None (use the default) while there are
    fewer than `min_samples` of them."""
    if len(samples) < policy.min_samples:
        return None
    lease = max(policy.floor_ms, math.ceil(policy.multiplier * p99(samples)), grown_ms)
    return min(lease, policy.cap_ms)


def grown_lease_ms(policy: LeasePolicy, observed_ms: int, current_grown_ms: int) -> int:
    """What a node's lease grows to after a run of `observed_ms` outlived its tuned lease: room for
    twice that run, and never less than before."""
    return min(policy.cap_ms, max(current_grown_ms, 2 * observed_ms))
