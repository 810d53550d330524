"""Queue health per node: what waits, for how long, and whether a runtime is asking for it."""

from __future__ import annotations

from fastapi import APIRouter

from state_manager.api.deps import Context
from state_manager.schemas.queues import QueuesView
from state_manager.services import queues

router = APIRouter(tags=["runs"])


@router.get(
    "/queues",
    response_model=QueuesView,
    summary="Queue health per node",
)
async def queue_health(context: Context, namespace_name: str) -> QueuesView:
    """For every registered node of the namespace and every node with work: the due backlog and
    the age of its oldest due state, delayed and claimed states, when a runtime last asked for
    the node's work, and `stalled` when states have waited longer than QUEUE_STALL_SECONDS with
    no runtime asking."""
    return await queues.queue_health(context, namespace_name)
