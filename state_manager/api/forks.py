"""Forking a run that has ended (decision 0023)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body

from state_manager.api import examples
from state_manager.api.deps import Context, IdempotencyKeyHeader
from state_manager.api.openapi_docs import errors
from state_manager.api.runs import epoch_ms
from state_manager.schemas.forks import (
    ForkedFrom,
    ForkFailedRequest,
    ForkFailedResponse,
    ForkRunRequest,
    ForkRunResponse,
    SkippedFork,
)
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
    return _answer(await forks.fork_run(context, namespace_name, run_id, request))


def _answer(forked: forks.Forked) -> ForkRunResponse:
    run = forked.run
    origin = run.forked_from or {}
    return ForkRunResponse(
        run_id=run.run_id,
        forked_from=ForkedFrom(run_id=origin.get("run_id", ""), starts=origin.get("from", [])),
        reused=forked.reused,
        status=run.status,
    )


@router.post(
    "/runs/fork-failed",
    response_model=ForkFailedResponse,
    response_model_by_alias=True,
    summary="Fork the failed runs of a graph from where they failed",
    responses=errors(400, e400="A malformed time"),
)
async def fork_failed(
    context: Context,
    namespace_name: str,
    body: Annotated[ForkFailedRequest, Body(openapi_examples=examples.FORK_FAILED)],
    idempotency_key: IdempotencyKeyHeader = None,
) -> ForkFailedResponse:
    """Fork each FAILED run of the graph created in the window (oldest first, at most `limit`),
    each from the nodes where it failed, by default on the current graph version (after a fix).
    With an `Idempotency-Key`, a repeat of the same request answers the same forks and forks
    nothing twice. A failed run that cannot be forked is listed in `skipped` with the reason."""
    done = await forks.fork_failed(
        context,
        namespace_name,
        body.graph,
        since_ms=epoch_ms(body.since, "since"),
        until_ms=epoch_ms(body.until, "until"),
        graph_version=body.graph_version,
        limit=body.limit,
        key=idempotency_key,
    )
    return ForkFailedResponse(
        forks=[_answer(forked) for forked in done.forks],
        skipped=[SkippedFork(run_id=run_id, reason=reason) for run_id, reason in done.skipped],
    )
