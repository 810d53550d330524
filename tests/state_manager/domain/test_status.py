"""Run status and join verdicts. (The status x event grid is tested through the production write
path, `queries.transition`, in tests/state_manager/services/test_transitions.py.)"""

import pytest

from state_manager.domain.status import (
    JoinVerdict,
    RunStatus,
    StateStatus,
    ended_run_status,
    join_verdict,
    node_status,
    run_counts,
    run_status,
    upstream_run_status,
)

S = StateStatus


@pytest.mark.parametrize(
    ("statuses", "pending_effect", "expected"),
    [
        ([S.SUCCESS, S.SUCCESS], False, "SUCCESS"),
        ([S.SUCCESS, S.PRUNED], False, "SUCCESS"),
        ([S.SUCCESS, S.QUEUED], False, "PENDING"),
        ([S.SUCCESS, S.EXECUTED], False, "PENDING"),
        ([S.SUCCESS, S.ERRORED], False, "FAILED"),
        ([S.ERRORED, S.CREATED], False, "PENDING"),
        ([S.RETRY_CREATED, S.SUCCESS], False, "SUCCESS"),
        ([S.TIMEDOUT], False, "FAILED"),
        ([S.CANCELLED, S.SUCCESS], False, "FAILED"),
        ([S.SUCCESS], True, "PENDING"),
        ([], False, "FAILED"),
    ],
)
def test_run_status(statuses: list[StateStatus], pending_effect: bool, expected: str) -> None:
    assert run_status(statuses, effects_pending=pending_effect) == expected


@pytest.mark.parametrize(
    ("strategy", "statuses", "expected"),
    [
        ("ALL_SUCCESS", [], JoinVerdict.FIRE),
        ("ALL_SUCCESS", [S.SUCCESS, S.SUCCESS], JoinVerdict.FIRE),
        ("ALL_SUCCESS", [S.SUCCESS, S.QUEUED], JoinVerdict.WAIT),
        ("ALL_SUCCESS", [S.SUCCESS, S.EXECUTED], JoinVerdict.WAIT),
        ("ALL_SUCCESS", [S.RETRY_CREATED, S.SUCCESS], JoinVerdict.FIRE),
        ("ALL_SUCCESS", [S.ERRORED, S.QUEUED], JoinVerdict.WAIT),
        ("ALL_SUCCESS", [S.ERRORED, S.SUCCESS], JoinVerdict.FAIL),
        ("ALL_SUCCESS", [S.PRUNED, S.SUCCESS], JoinVerdict.FIRE),
        ("ALL_SUCCESS", [S.TIMEDOUT], JoinVerdict.FAIL),
        ("ALL_DONE", [S.ERRORED, S.SUCCESS], JoinVerdict.FIRE),
        ("ALL_DONE", [S.CANCELLED, S.PRUNED], JoinVerdict.FIRE),
        ("ALL_DONE", [S.ERRORED, S.CREATED], JoinVerdict.WAIT),
    ],
)
def test_join_verdict(strategy: str, statuses: list[StateStatus], expected: JoinVerdict) -> None:
    assert join_verdict(strategy, statuses) is expected


def test_run_counts_group_statuses_as_the_runs_listing_shows_them() -> None:
    statuses = [S.SUCCESS, S.PRUNED, S.QUEUED, S.ERRORED, S.TIMEDOUT, S.RETRY_CREATED, S.CANCELLED]
    assert run_counts(statuses) == {
        "success_count": 2,
        "pending_count": 1,
        "errored_count": 3,
        "retried_count": 1,
        "total_count": 7,
        "status": "PENDING",
    }


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({}, "NOT_STARTED"),
        ({S.CREATED: 2}, "PENDING"),
        ({S.CREATED: 1, S.QUEUED: 1, S.SUCCESS: 3}, "RUNNING"),
        ({S.EXECUTED: 1}, "RUNNING"),
        ({S.SUCCESS: 3, S.ERRORED: 1}, "FAILED"),
        ({S.TIMEDOUT: 1, S.CREATED: 1}, "PENDING"),  # something still to happen
        ({S.SUCCESS: 2, S.CANCELLED: 1}, "CANCELLED"),
        ({S.SUCCESS: 2, S.PRUNED: 1, S.RETRY_CREATED: 4}, "SUCCESS"),  # retried attempts ignored
        ({S.SUCCESS: 0, S.ERRORED: 0}, "NOT_STARTED"),
    ],
)
def test_a_template_nodes_status_in_a_run(counts: dict[StateStatus, int], expected: str) -> None:
    assert node_status(counts) == expected


def test_an_ended_run_is_stored_as_counted_unless_it_was_cancelled() -> None:
    assert ended_run_status("SUCCESS", cancelled=False) == RunStatus.SUCCESS
    assert ended_run_status("FAILED", cancelled=False) == RunStatus.FAILED
    assert ended_run_status("FAILED", cancelled=True) == RunStatus.CANCELLED
    assert upstream_run_status("RUNNING") == "PENDING" and upstream_run_status("CANCELLED") == "CANCELLED"
