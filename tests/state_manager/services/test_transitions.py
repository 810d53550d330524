"""The whole (status x event) grid of the state machine, through the one write path the services
use: `queries.transition`, a conditional update against the store.

The expected table is written out by hand here, so a change to `domain/status.py` that moves a
transition shows up as a failing cell.
"""

from __future__ import annotations

import pytest
from bson import ObjectId

from state_manager.db import queries
from state_manager.db.documents import State
from state_manager.domain.status import TRANSITIONS, Event, StateStatus
from state_manager.services.context import AppContext

S = StateStatus
AFTER_A_REPORT = set(S) - {S.CREATED, S.QUEUED, S.NEXT_CREATED}

EXPECTED: dict[Event, dict[StateStatus, StateStatus]] = {
    Event.ENQUEUE: {S.CREATED: S.QUEUED},
    Event.EXECUTED: {S.QUEUED: S.EXECUTED},
    Event.EXECUTED_FINAL: {S.QUEUED: S.SUCCESS},
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
    Event.EFFECTS_FAILED: dict.fromkeys(AFTER_A_REPORT, S.NEXT_CREATED_ERROR),
    Event.REJOIN: dict.fromkeys(
        [S.CREATED, S.QUEUED, S.SUCCESS, S.PRUNED, S.ERRORED, S.NEXT_CREATED_ERROR, S.TIMEDOUT, S.CANCELLED],
        S.RETRY_CREATED,
    ),
}


def test_every_event_is_in_the_table() -> None:
    assert set(TRANSITIONS) == set(Event) == set(EXPECTED)


async def _state_in(status: StateStatus, key: str) -> ObjectId:
    state = State(
        node_name="n",
        namespace_name="ns",
        identifier="a",
        graph_name="g",
        graph_namespace="ns",
        run_id="r",
        status=status,
        spawn_key=key,
    )
    await queries.insert(state)
    return ObjectId(str(state.id))


@pytest.mark.parametrize("event", list(Event))
async def test_transition_grid_through_the_store(ctx: AppContext, event: Event) -> None:
    for status in StateStatus:
        state_id = await _state_in(status, f"{event}:{status}")
        expected = EXPECTED[event].get(status)

        updated = await queries.transition(state_id, event, {"error": "marker"})

        stored = await queries.find_state(state_id)
        assert stored is not None
        if expected is None:
            assert updated is None, f"{status} --{event}--> should be refused"
            assert (stored.status, stored.error) == (status, None), "a refused transition wrote"
        else:
            assert updated is not None, f"{status} --{event}--> should be allowed"
            assert updated.status == stored.status == expected
            assert stored.error == "marker"


async def test_a_transition_with_a_claim_token_needs_the_current_claim(ctx: AppContext) -> None:
    state_id = await _state_in(S.QUEUED, "claimed")
    await queries.set_fields(state_id, {"claim_token": "current"}, {})

    assert await queries.transition(state_id, Event.EXECUTED, claim="earlier") is None
    assert (await queries.find_state(state_id)).status == S.QUEUED  # type: ignore[union-attr]
    assert await queries.transition(state_id, Event.EXECUTED, claim="current") is not None
