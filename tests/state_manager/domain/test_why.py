"""Why a state waits (domain/why.py), decided from what the server observes."""

from __future__ import annotations

from state_manager.domain.why import WaitFacts, why

NOW = 1_800_000_000_000


def _facts(**changes: object) -> WaitFacts:
    base: dict[str, object] = {"status": "CREATED", "node": "Fetch", "namespace": "web", "now": NOW}
    return WaitFacts(**{**base, **changes})  # type: ignore[arg-type]


def test_a_state_not_due_yet_is_delayed_until_its_time() -> None:
    answer = why(_facts(enqueue_after=NOW + 90_000, last_poll_ms=NOW))
    assert (answer.waiting, answer.reason, answer.predicted_start_ms) == (True, "delayed", NOW + 90_000)
    assert "(90 s from now)" in answer.detail
    asked = why(_facts(enqueue_after=NOW + 60_000, not_before_ms=NOW + 60_000, priority_ms=600_000))
    assert asked.reason == "delayed" and "its node asked to wait" in asked.detail


def test_due_work_nobody_asks_for_names_the_node() -> None:
    never = why(_facts(enqueue_after=NOW))
    assert never.reason == "no_runtime"
    assert never.detail == (
        "Node Fetch in namespace web has work due, but no runtime has asked for it yet: "
        "start a runtime that runs it."
    )
    gone = why(_facts(enqueue_after=NOW, last_poll_ms=NOW - 120_000))
    assert "no runtime has asked for it for 120 s" in gone.detail


def test_a_queued_state_has_its_place_and_a_start_from_its_nodes_running_times() -> None:
    answer = why(_facts(last_poll_ms=NOW - 1_000, ahead=5, running=2, durations_ms=[900, 1_000, 1_100]))
    assert (answer.reason, answer.detail) == ("queued", "It is number 6 in the queue of node Fetch.")
    assert answer.predicted_start_ms == NOW + 2 * 1_000  # 3 turns of the 2 running, a second each
    assert why(_facts(last_poll_ms=NOW)).detail == "It is next in the queue of node Fetch."
    assert why(_facts(last_poll_ms=NOW)).predicted_start_ms is None  # no running times yet


def test_a_state_that_does_not_wait_says_what_it_is_doing() -> None:
    assert why(_facts(status="QUEUED")) == why(_facts(status="QUEUED"))
    assert not why(_facts(status="QUEUED")).waiting
    assert why(_facts(status="SUCCESS")).detail == "It has ended: SUCCESS."
