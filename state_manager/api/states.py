"""States: trigger, create, claim, report, signal, heartbeat, secrets.

Executed and errored answer on both eras' paths: SEED's `/states/{id}/...` and HEAD's
`/state/{id}/...`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from state_manager.api.deps import ClaimToken, Context, IdempotencyKeyHeader, StateId
from state_manager.schemas.states import (
    CreateStatesRequest,
    EnqueueRequest,
    ErroredRequest,
    ExecutedRequest,
    ManualRetryRequest,
    PruneRequest,
    ReEnqueueAfterRequest,
    TriggerRequest,
    claimed_item,
    trigger_item,
)
from state_manager.services import runs, states

router = APIRouter(tags=["states"])


@router.post("/graph/{graph_name}/trigger")
async def trigger_graph(
    context: Context,
    namespace_name: str,
    graph_name: str,
    body: TriggerRequest | None = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> dict[str, Any]:
    request = body or TriggerRequest()
    if idempotency_key is None:
        run, created = await runs.trigger_graph(context, namespace_name, graph_name, request)
    else:
        run, created = await runs.trigger_once(context, namespace_name, graph_name, request, idempotency_key)
    return {"status": "CREATED", "run_id": run.run_id, "states": [trigger_item(s) for s in created]}


@router.post("/graph/{graph_name}/states/create")
async def create_states(
    context: Context, namespace_name: str, graph_name: str, body: CreateStatesRequest
) -> dict[str, Any]:
    created = await runs.create_states(context, namespace_name, graph_name, body)
    return {"status": "CREATED", "run_id": body.run_id, "states": [trigger_item(s) for s in created]}


@router.post("/states/enqueue")
async def enqueue_states(
    request: Request, context: Context, namespace_name: str, body: EnqueueRequest
) -> dict[str, Any]:
    # An official SDK sends no wait_ms and polls in a tight loop: it gets a short long-poll too.
    wait_ms = context.settings.implicit_wait_ms if body.wait_ms is None else body.wait_ms
    claimed = await states.enqueue(
        context,
        namespace_name,
        body.nodes,
        body.batch_size,
        wait_ms,
        gone=request.is_disconnected,
        tuned=body.wait_ms is None,  # the official SDKs: they send no wait_ms and no heartbeat
    )
    return {
        "count": len(claimed),
        "namespace": namespace_name,
        "status": "QUEUED",
        "states": [claimed_item(s) for s in claimed],
    }


@router.post("/state/{state_id}/executed")
@router.post("/states/{state_id}/executed")
async def executed_state(
    context: Context, namespace_name: str, state_id: StateId, body: ExecutedRequest, claim: ClaimToken = None
) -> dict[str, Any]:
    await states.mark_executed(context, namespace_name, state_id, body.outputs, claim)
    return {"status": "EXECUTED"}


@router.post("/state/{state_id}/errored")
@router.post("/states/{state_id}/errored")
async def errored_state(
    context: Context, namespace_name: str, state_id: StateId, body: ErroredRequest, claim: ClaimToken = None
) -> dict[str, Any]:
    retry_created = await states.mark_errored(context, namespace_name, state_id, body.error, claim)
    return {"status": "RETRY_CREATED" if retry_created else "ERRORED", "retry_created": retry_created}


@router.post("/state/{state_id}/prune")
async def prune_state(
    context: Context, namespace_name: str, state_id: StateId, body: PruneRequest, claim: ClaimToken = None
) -> dict[str, Any]:
    pruned = await states.prune(context, namespace_name, state_id, body.data, claim)
    return {"enqueue_after": pruned.enqueue_after, "status": "PRUNED"}


@router.post("/state/{state_id}/re-enqueue-after")
async def re_enqueue_after(
    context: Context,
    namespace_name: str,
    state_id: StateId,
    body: ReEnqueueAfterRequest,
    claim: ClaimToken = None,
) -> dict[str, Any]:
    state = await states.requeue_after(context, namespace_name, state_id, body.enqueue_after, claim)
    return {"enqueue_after": state.enqueue_after, "status": "CREATED"}


@router.post("/state/{state_id}/manual-retry")
async def manual_retry(
    context: Context, namespace_name: str, state_id: StateId, body: ManualRetryRequest
) -> dict[str, Any]:
    retry = await states.manual_retry(context, namespace_name, state_id, body.fanout_id)
    return {"id": str(retry.id), "status": "CREATED"}


@router.post("/state/{state_id}/heartbeat")
async def heartbeat(
    context: Context, namespace_name: str, state_id: StateId, claim: ClaimToken = None
) -> dict[str, Any]:
    expires = await states.heartbeat(context, namespace_name, state_id, claim)
    return {"status": "QUEUED", "lease_expires_at": expires, "lease_ms": context.lease_ms}


@router.get("/state/{state_id}/secrets")
async def get_secrets(
    context: Context, namespace_name: str, state_id: StateId, claim: ClaimToken = None
) -> dict[str, Any]:
    return {"secrets": await states.get_secrets(context, namespace_name, state_id, claim)}
