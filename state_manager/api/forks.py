"""Forking a run that has ended (decision 0023)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from state_manager.api import examples
from state_manager.api.deps import Context
from state_manager.api.openapi_docs import errors
from state_manager.schemas.forks import ForkedFrom, ForkRunRequest, ForkRunResponse
from state_manager.services import forks

router = APIRouter(tags=["runs"])


@router.post(
    "/run/{run_id}/fork",
    status_code=201,
    response_model=ForkRunResponse,
    response_model_by_alias=True,
    summary="Fork a run from some of its nodes",
    responses=errors(
        404,
        409,
        422,
        e404="No such run in this namespace",
        e409="The run has not ended, or the graph version it ran is no longer kept",
        e422="An unknown node or input, an input for a node not forked from, or a reused node that failed",
    ),
)
async def fork_run(
    context: Context,
    namespace_name: str,
    run_id: str,
    body: Annotated[ForkRunRequest, Body(openapi_examples=examples.FORK_RUN)],
) -> ForkRunResponse:
    """A new run of the same graph that reuses what this run computed above the nodes in `from`
    (their states are copied, as they ended, and not run again) and runs the `from` nodes and
    everything below them again, with the inputs given for them and the store values given.
    `GET /run/{a}/diff/{b}` shows what changed."""
    request = forks.ForkRequest(body.starts, body.inputs, body.store, body.graph_version)
    forked = await forks.fork_run(context, namespace_name, run_id, request)
    run = forked.run
    return ForkRunResponse(
        run_id=run.run_id,
        forked_from=ForkedFrom(run_id=run_id, starts=body.starts),
        reused=forked.reused,
        status=run.status,
    )
