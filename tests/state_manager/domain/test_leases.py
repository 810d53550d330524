"""Tuned leases, as arithmetic."""

from __future__ import annotations

from state_manager.domain.leases import LeasePolicy, grown_lease_ms, p99, tuned_lease_ms

POLICY = LeasePolicy(multiplier=10, floor_ms=30_000, cap_ms=300_000, min_samples=20)


def test_p99_is_the_nearest_rank() -> None:
    assert p99([5]) == 5
    assert p99(list(range(1, 101))) == 99
    assert p99([50] * 99 + [9_000]) == 50
    assert p99([50] * 98 + [9_000, 9_000]) == 9_000


def test_no_tuned_lease_before_enough_samples() -> None:
    assert tuned_lease_ms(POLICY, [50] * 19) is None
    assert tuned_lease_ms(POLICY, [50] * 20) == 30_000  # ten times 50 ms is below the floor


def test_a_tuned_lease_is_a_multiple_of_the_p99_between_floor_and_cap() -> None:
    assert tuned_lease_ms(POLICY, [4_000] * 20) == 40_000
    assert tuned_lease_ms(POLICY, [60_000] * 20) == 300_000


def test_a_grown_lease_wins_over_the_samples_but_not_over_the_cap() -> None:
    assert tuned_lease_ms(POLICY, [50] * 20, grown_ms=45_000) == 45_000
    assert grown_lease_ms(POLICY, observed_ms=40_000, current_grown_ms=0) == 80_000
    assert grown_lease_ms(POLICY, observed_ms=10_000, current_grown_ms=80_000) == 80_000
    assert grown_lease_ms(POLICY, observed_ms=400_000, current_grown_ms=0) == 300_000
