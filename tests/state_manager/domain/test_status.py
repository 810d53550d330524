"""The whole (status x event) grid of the state machine, plus run status and join verdicts."""

import pytest

from state_manager.domain.status import (
    TRANSITIONS,
    Event,
    InvalidTransitionError,
    JoinVerdict,
    StateStatus,
    apply,
    join_verdict,
    run_counts,
    run_status,
)

S = StateStatus

EXPECTED: dict[Event, dict[StateStatus, StateStatus]] = {
    Event.ENQUEUE: {S.CREATED: S.QUEUED},
    Event.EXECUTED: {S.QUEUED: S.EXECUTED},
    Event.NEXT_CREATED: {S.EXECUTED: S.SUCCESS},
    Event.NEXT_FAILED: {S.EXECUTED: S.NEXT_CREATED_ERROR},
    Event.ERRORED_RETRY: {S.QUEUED: S.RETRY_CREATED},
    Event.ERRORED: {S.QUEUED: S.ERRORED},
    Event.LEASE_EXPIRED_RETRY: {S.QUEUED: S.RETRY_CREATED},
    Event.LEASE_EXPIRED: {S.QUEUED: S.TIMEDOUT},
    Event.PRUNE: {S.QUEUED: S.PRUNED},
    Event.REQUEUE_AFTER: {S.QUEUED: S.CREATED, S.CREATED: S.CREATED},
    Event.MANUAL_RETRY: {
        S.ERRORED: S.RETRY_CREATED,
        S.NEXT_CREATED_ERROR: S.RETRY_CREATED,
        S.TIMEDOUT: S.RETRY_CREATED,
        S.CANCELLED: S.RETRY_CREATED,
    },
    Event.CANCEL: {S.CREATED: S.CANCELLED, S.QUEUED: S.CANCELLED},
}

GRID = [(status, event) for event in Event for status in StateStatus]


def test_every_event_is_in_the_table() -> None:
    assert set(TRANSITIONS) == set(Event) == set(EXPECTED)


@pytest.mark.parametrize(("current", "event"), GRID, ids=[f"{s}-{e}" for s, e in GRID])
def test_transition_grid(current: StateStatus, event: Event) -> None:
    expected = EXPECTED[event].get(current)
    if expected is None:
        with pytest.raises(InvalidTransitionError) as info:
            apply(current, event)
        assert current.value in str(info.value)
        assert event.value in str(info.value)
    else:
        assert apply(current, event) is expected


@pytest.mark.parametrize(
    "finished", [S.SUCCESS, S.PRUNED, S.ERRORED, S.NEXT_CREATED_ERROR, S.TIMEDOUT, S.CANCELLED]
)
def test_a_finished_state_cannot_be_requeued_or_reported_again(finished: StateStatus) -> None:
    for event in (Event.REQUEUE_AFTER, Event.EXECUTED, Event.ERRORED, Event.PRUNE, Event.ENQUEUE):
        with pytest.raises(InvalidTransitionError):
            apply(finished, event)


def test_success_cannot_be_retried_manually() -> None:
    with pytest.raises(InvalidTransitionError):
        apply(S.SUCCESS, Event.MANUAL_RETRY)


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
