"""Reading runs back: states of a namespace or run, runs with counts, a run's graph, a node."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from state_manager.clock import iso
from state_manager.schemas.runs import run_graph_view
from state_manager.schemas.states import state_item
from state_manager.services import runs

router = APIRouter(tags=["runs"])


@router.get("/states/")
async def list_states(namespace_name: str) -> dict[str, Any]:
    found = await runs.namespace_states(namespace_name)
    return {
        "namespace": namespace_name,
        "count": len(found),
        "states": [state_item(s) for s in found],
        "run_ids": sorted({s.run_id for s in found}),
    }


@router.get("/states/run/{run_id}")
async def run_states(namespace_name: str, run_id: str) -> dict[str, Any]:
    found = await runs.run_states(namespace_name, run_id)
    return {
        "namespace": namespace_name,
        "run_id": run_id,
        "count": len(found),
        "states": [state_item(s) for s in found],
    }


@router.get("/states/run/{run_id}/graph")
async def run_graph(namespace_name: str, run_id: str) -> dict[str, Any]:
    return run_graph_view(namespace_name, run_id, await runs.run_states(namespace_name, run_id))


@router.get("/runs/{page}/{size}")
async def list_runs(
    namespace_name: str,
    page: Annotated[int, Path(ge=1, le=1_000_000_000, description="1-based page number")],
    size: Annotated[int, Path(ge=1, le=1000)],
) -> dict[str, Any]:
    total, items = await runs.list_runs(namespace_name, page, size)
    for item in items:
        item["created_at"] = iso(item["created_at"])
    return {"namespace": namespace_name, "total": total, "page": page, "size": size, "runs": items}


@router.get("/graph/{graph_name}/run/{run_id}/node/{node_id}")
async def node_details(namespace_name: str, graph_name: str, run_id: str, node_id: str) -> dict[str, Any]:
    return state_item(await runs.node_details(namespace_name, graph_name, run_id, node_id))


@router.post("/run/{run_id}/cancel")
async def cancel_run(namespace_name: str, run_id: str) -> dict[str, Any]:
    """Cancel a run: its waiting states (created, delayed or claimed) become CANCELLED, and
    nothing new starts in it. A worker still running one of its states gets 409 for its next
    call. Repeating it answers the same; a run that already ended is 409."""
    run = await runs.cancel_run(namespace_name, run_id)
    return {"run_id": run.run_id, "status": "CANCELLED", "cancelled_count": run.cancelled_count}
