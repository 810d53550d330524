"""Reading runs back: states of a namespace or run, runs with counts, a run's graph, a node."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query

from state_manager.api.deps import Context, StateId
from state_manager.api.openapi_docs import errors
from state_manager.clock import iso
from state_manager.domain.status import RunStatus, StateStatus
from state_manager.errors import BadRequest
from state_manager.schemas.runs import (
    CancelRunResponse,
    NamespaceStates,
    RetryFailedResult,
    RunDetail,
    RunGraphView,
    RunList,
    RunPage,
    RunStateGraph,
    RunStates,
    StateItem,
    StatePage,
    StateView,
    run_graph_view,
)
from state_manager.schemas.states import state_item
from state_manager.services import run_views, runs

router = APIRouter(tags=["runs"])


@router.get(
    "/states/",
    response_model=NamespaceStates,
    summary="List every state of the namespace (SEED)",
)
async def list_states(namespace_name: str) -> dict[str, Any]:
    """Every state of every run of graphs in this namespace, oldest first, with the run ids that
    have any. Kept for SEED-era clients; prefer `GET /runs` and `GET /run/{run_id}/states`, which
    are paged."""
    found = await runs.namespace_states(namespace_name)
    return {
        "namespace": namespace_name,
        "count": len(found),
        "states": [state_item(s) for s in found],
        "run_ids": sorted({s.run_id for s in found}),
    }


@router.get("/states/run/{run_id}", response_model=RunStates, summary="List a run's states (SEED)")
async def run_states(namespace_name: str, run_id: str) -> dict[str, Any]:
    """Every state of one run, oldest first (an unknown run has none). Kept for SEED-era
    clients; `GET /run/{run_id}/states` pages and filters them."""
    found = await runs.run_states(namespace_name, run_id)
    return {
        "namespace": namespace_name,
        "run_id": run_id,
        "count": len(found),
        "states": [state_item(s) for s in found],
    }


@router.get(
    "/states/run/{run_id}/graph",
    response_model=RunStateGraph,
    summary="A run's states as a graph (SEED)",
)
async def run_graph(namespace_name: str, run_id: str) -> dict[str, Any]:
    """One node per state and an edge from each state's direct parent, with the number of states
    in every status. For the template's graph with counts per node, see
    `GET /run/{run_id}/graph`."""
    return run_graph_view(namespace_name, run_id, await runs.run_states(namespace_name, run_id))


@router.get(
    "/runs/{page}/{size}",
    response_model=RunList,
    summary="List runs by page (HEAD)",
    responses=errors(422),
)
async def list_runs(
    namespace_name: str,
    page: Annotated[int, Path(ge=1, le=1_000_000_000, description="1-based page number")],
    size: Annotated[int, Path(ge=1, le=1000)],
) -> dict[str, Any]:
    """Runs newest first with their counts and status, as upstream HEAD lists them: a run that
    is running shows as PENDING here (`GET /runs` shows RUNNING, filters and pages by cursor)."""
    total, items = await runs.list_runs(namespace_name, page, size)
    for item in items:
        item["created_at"] = iso(item["created_at"])
    return {"namespace": namespace_name, "total": total, "page": page, "size": size, "runs": items}


@router.get(
    "/graph/{graph_name}/run/{run_id}/node/{node_id}",
    response_model=StateItem,
    summary="Get one state of a run (HEAD)",
    responses=errors(400, 404, e400="The node id is not a state id", e404="No such state in this run"),
)
async def node_details(namespace_name: str, graph_name: str, run_id: str, node_id: str) -> dict[str, Any]:
    """One state (`node_id` is its id) of a run of this graph. `GET /state/{state_id}/view`
    gives the same with every time."""
    return state_item(await runs.node_details(namespace_name, graph_name, run_id, node_id))


@router.post(
    "/run/{run_id}/cancel",
    response_model=CancelRunResponse,
    summary="Cancel a run",
    responses=errors(404, 409, e404="No such run in this namespace", e409="The run has already ended"),
)
async def cancel_run(context: Context, namespace_name: str, run_id: str) -> CancelRunResponse:
    """Cancel a run: its waiting states (created, delayed or claimed) become CANCELLED, and
    nothing new starts in it. A worker still running one of its states gets 409 for its next
    call. Repeating it answers the same; a run that already ended is 409."""
    run = await runs.cancel_run(context, namespace_name, run_id)
    return CancelRunResponse(run_id=run.run_id, status="CANCELLED", cancelled_count=run.cancelled_count)


# --- Reading and steering runs (the dashboard's and the CLI's calls) ----------------------------


def epoch_ms(value: str | None, name: str) -> int | None:
    """`since`/`until`: epoch milliseconds or an ISO 8601 time (UTC when it names no zone)."""
    if value is None or value == "":
        return None
    if value.lstrip("-").isdigit():
        return int(value)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadRequest(f"{name} must be epoch milliseconds or an ISO 8601 time, not {value!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


@router.get(
    "/runs",
    response_model=RunPage,
    summary="Search runs",
    responses=errors(400, 422, e400="A malformed cursor or time", e422="A filter outside its set"),
)
async def search_runs(
    namespace_name: str,
    graph: Annotated[str | None, Query(description="only runs of this graph")] = None,
    status: Annotated[RunStatus | None, Query(description="only runs in this stored status")] = None,
    since: Annotated[str | None, Query(description="created at or after: epoch ms or ISO 8601")] = None,
    until: Annotated[str | None, Query(description="created at or before: epoch ms or ISO 8601")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    forked_from: Annotated[str | None, Query(description="only the forks of this run")] = None,
) -> RunPage:
    """Runs of the namespace, newest first, with their stored status (PENDING, RUNNING, SUCCESS,
    FAILED, CANCELLED), counts per state status, times (epoch ms) and duration. Page with
    `next_cursor`; null on the last page."""
    return await run_views.search_runs(
        namespace_name,
        graph=graph,
        status=status.value if status else None,
        since_ms=epoch_ms(since, "since"),
        until_ms=epoch_ms(until, "until"),
        limit=limit,
        cursor=cursor,
        forked_from=forked_from,
    )


@router.get("/run/{run_id}", response_model=RunDetail, summary="Get a run", responses=errors(404))
async def get_run(namespace_name: str, run_id: str) -> RunDetail:
    """One run: its status, counts per state status, times, graph, how it was triggered (api or
    cron) and its store."""
    return await run_views.run_detail(namespace_name, run_id)


@router.get(
    "/run/{run_id}/states",
    response_model=StatePage,
    summary="List a run's states, paged",
    responses=errors(
        400,
        404,
        422,
        e400="A malformed cursor",
        e404="No such run in this namespace",
        e422="An unknown state status or a limit out of range",
    ),
)
async def list_run_states(
    namespace_name: str,
    run_id: str,
    status: Annotated[StateStatus | None, Query(description="only states in this status")] = None,
    identifier: Annotated[str | None, Query(description="only states of this template node")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> StatePage:
    """A run's states, oldest first, with every time (epoch ms: due, claimed, ended, lease
    expiry, deadline) and retry count. Page with `next_cursor`."""
    return await run_views.state_page(
        namespace_name,
        run_id,
        status=status.value if status else None,
        identifier=identifier,
        limit=limit,
        cursor=cursor,
    )


@router.get(
    "/run/{run_id}/graph",
    response_model=RunGraphView,
    summary="A run's template graph with status counts",
    responses=errors(404, 422, e404="No such run in this namespace", e422="An unknown view"),
)
async def run_template_graph(
    context: Context,
    namespace_name: str,
    run_id: str,
    view: Annotated[  # noqa: ARG001 - checked by its type: the one view there is
        Literal["template"], Query(description="only `template` for now")
    ] = "template",
) -> RunGraphView:
    """The template's DAG for this run: one node per template node (a fan-out is one node), each
    with the number of its states in each status and an overall status (NOT_STARTED, PENDING,
    RUNNING, SUCCESS, FAILED, CANCELLED), and the edges between them."""
    return await run_views.template_graph(context, namespace_name, run_id)


@router.post(
    "/run/{run_id}/retry-failed",
    response_model=RetryFailedResult,
    summary="Retry every failed state of a run",
    responses=errors(404, 409, e404="No such run in this namespace", e409="The run was cancelled"),
)
async def retry_failed(context: Context, namespace_name: str, run_id: str) -> RetryFailedResult:
    """A manual retry of every ERRORED, TIMEDOUT or NEXT_CREATED_ERROR state of the run, once
    each: repeating the call creates nothing new for states it already retried."""
    return await run_views.retry_failed(context, namespace_name, run_id)


@router.get(
    "/state/{state_id}/view",
    response_model=StateView,
    summary="Get a state",
    responses=errors(404, 422, e404="No such state of a graph in this namespace", e422="Not a state id"),
)
async def get_state(namespace_name: str, state_id: StateId) -> StateView:
    """One state of a graph in this namespace, with its inputs, outputs, prune data, full error,
    parents, retry count and every time (epoch ms)."""
    return run_views.state_view(await run_views.find_state(namespace_name, state_id))
