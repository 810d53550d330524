"""Flow-control gates as data (domain/gates.py): ids, parked keys and the rate's arithmetic."""

from __future__ import annotations

from state_manager.domain import gates
from state_manager.domain.models import RateLimit

NOW_US = 1_800_000_000_000_000


def test_a_gates_id_names_what_it_limits_and_reads_back() -> None:
    gate = gates.gate_id(gates.CONCURRENCY, "web", "summaries", "summarise", "team-a")
    assert gates.parse(gate) == gates.GateId(gates.CONCURRENCY, "web", "summaries", "summarise", "team-a")
    whole = gates.gate_id(gates.RUNS, "web", "summaries", None, None)
    assert gates.parse(whole) == gates.GateId(gates.RUNS, "web", "summaries", None, None)
    assert gates.parse(gates.gate_id(gates.RATE, "web", "g", "n", "")).key == ""  # an empty value is a key


def test_separators_in_a_keys_value_cannot_reach_another_gates_parked_states() -> None:
    hostile = gates.gate_id(gates.CONCURRENCY, "web", "g", "n", "a\x1e9999\x1fz")
    plain = gates.gate_id(gates.CONCURRENCY, "web", "g", "n", "a")
    parked = gates.park_key(hostile, "web\x1fNode\x1f000000000000042")
    bounds = gates.park_range(plain)
    assert not bounds["$gte"] <= parked < bounds["$lt"]
    assert gates.gate_of_parked(parked) == hostile


def test_a_long_key_is_cut_with_a_hash_so_two_long_keys_stay_apart() -> None:
    one = gates.gate_id(gates.CONCURRENCY, "web", "g", "n", "x" * 5_000 + "1")
    two = gates.gate_id(gates.CONCURRENCY, "web", "g", "n", "x" * 5_000 + "2")
    assert one != two
    assert len(one) < 200 and len(two) < 200


def test_parked_states_keep_the_rank_of_their_queue_key() -> None:
    gate = gates.gate_id(gates.CONCURRENCY, "web", "g", "n", None)
    early = gates.park_key(gate, "web\x1fNode\x1f000000000000042")
    late = gates.park_key(gate, "web\x1fNode\x1f000000000000043")
    bounds = gates.park_range(gate)
    assert bounds["$gte"] <= early < late < bounds["$lt"]


def test_a_rate_allows_its_burst_then_one_per_interval() -> None:
    rate = RateLimit(per_second=4, burst=2)
    granted, tat = gates.rate_take(0, NOW_US, rate, 10)
    assert granted == 2
    assert gates.rate_take(tat, NOW_US, rate, 10)[0] == 0
    assert gates.rate_next_ms(tat, NOW_US, rate) == NOW_US // 1000 + 250  # a quarter second on
    assert gates.rate_take(tat, NOW_US + 250_000, rate, 10)[0] == 1
    assert gates.rate_take(tat, NOW_US + 10_000_000, rate, 10)[0] == 2  # a quiet spell: the burst again


def test_a_slow_rate_spaces_claims_by_its_interval() -> None:
    rate = RateLimit(per_second=0.1)
    granted, tat = gates.rate_take(0, NOW_US, rate, 3)
    assert granted == 1 and tat == NOW_US + 10_000_000
    assert gates.rate_next_ms(tat, NOW_US, rate) == NOW_US // 1000 + 10_000
