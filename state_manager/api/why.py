"""Why is it waiting (issue 18)."""

from __future__ import annotations

from fastapi import APIRouter

from state_manager.api.deps import Context, StateId
from state_manager.api.openapi_docs import errors
from state_manager.schemas.why import RunWhy, StateWhy, WaitingGroup
from state_manager.services import why

router = APIRouter(tags=["runs"])


@router.get(
    "/state/{state_id}/why",
    response_model=StateWhy,
    summary="Why a state is waiting",
    responses=errors(404, 422, e404="No such state in this namespace", e422="The id is not a state id"),
)
async def state_why(context: Context, namespace_name: str, state_id: StateId) -> StateWhy:
    """Whether the state waits to be claimed, why, in one sentence, and when it should start (null
    when the server cannot say): `delayed` (not due yet), `no_runtime` (due, but no runtime asked
    for its node lately), `queued` (its place in its node's queue, a start from its node's running
    times), `concurrency` (its node's slots for its key are all held: `blockers` are the holding
    states), `run_concurrency` (its graph's run slots are all held: `blockers` are the runs),
    `rate_limit` (its node's rate allows the next claim later), or `join` (a state that ran whose
    join waits for the branches below it: `blockers` are the open ones)."""
    state, answer = await why.state_why(context, namespace_name, state_id)
    return StateWhy(
        state_id=str(state.id),
        status=state.status.value,
        waiting=answer.waiting,
        reason=answer.reason,
        detail=answer.detail,
        predicted_start_ms=answer.predicted_start_ms,
        blockers=answer.blockers,
    )


@router.get(
    "/run/{run_id}/why",
    response_model=RunWhy,
    summary="Why a run's states are waiting",
    responses=errors(404, e404="No such run in this namespace"),
)
async def run_why(context: Context, namespace_name: str, run_id: str) -> RunWhy:
    """The run's states waiting to be claimed, by node and reason, with the first one's reason
    in a sentence and the earliest predicted start."""
    groups = [WaitingGroup(**row) for row in await why.run_why(context, namespace_name, run_id)]
    return RunWhy(run_id=run_id, waiting=sum(group.count for group in groups), groups=groups)
