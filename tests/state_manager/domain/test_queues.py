"""Queue keys (domain/queues.py): due states ranked by when they are due, less their run's priority."""

from __future__ import annotations

from state_manager.domain.queues import is_due, queue_fields, ready_key, ready_range

NOW = 1_800_000_000_000


def test_a_due_state_is_ranked_by_when_it_is_due_less_its_priority() -> None:
    early, late = ready_key("ns", "Node", NOW - 5_000), ready_key("ns", "Node", NOW)
    boosted = ready_key("ns", "Node", NOW, priority_ms=10_000)
    assert sorted([late, early, boosted]) == [boosted, early, late]
    assert queue_fields("CREATED", "ns", "Node", NOW, NOW) == {"ready": late, "delayed": None, "parked": None}


def test_a_priority_makes_a_delayed_state_due_earlier_but_not_a_nodes_own_wait() -> None:
    assert queue_fields("CREATED", "ns", "Node", NOW + 60_000, NOW)["delayed"] == "ns\x1fNode"
    assert queue_fields("CREATED", "ns", "Node", NOW + 60_000, NOW, priority_ms=120_000)["ready"] is not None
    assert not is_due(NOW + 60_000, 120_000, NOW + 60_000, NOW)  # re-enqueue-after: not before
    assert is_due(NOW + 60_000, 120_000, NOW + 60_000, NOW + 60_000)
    assert not is_due(NOW, -30_000, None, NOW)  # a negative priority: due later


def test_a_nodes_range_holds_its_states_only() -> None:
    bounds = ready_range("ns", "Node")

    def inside(value: str) -> bool:
        return bounds["$gte"] <= value < bounds["$lt"]

    assert inside(ready_key("ns", "Node", NOW)) and inside(ready_key("ns", "Node", 0))
    assert inside("ns\x1fNode")  # written before ranks were: claimed first
    assert not inside(ready_key("ns", "NodeB", NOW)) and not inside(ready_key("ns", "Nod", NOW))
    assert not inside(ready_key("other", "Node", NOW))
