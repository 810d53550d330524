"""States: trigger, create, claim, report, signal, heartbeat, secrets.

Executed and errored answer on both eras' paths: SEED's `/states/{id}/...` and HEAD's
`/state/{id}/...`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Request

from state_manager.api import examples
from state_manager.api.deps import ClaimToken, Context, IdempotencyKeyHeader, StateId
from state_manager.api.openapi_docs import WORKER_TAG, GraphNamePath, NamespacePath, error, errors
from state_manager.domain.status import StateStatus
from state_manager.schemas.states import (
    CreateStatesRequest,
    EnqueueRequest,
    EnqueueResponse,
    ErroredRequest,
    ErroredResponse,
    ExecutedRequest,
    ExecutedResponse,
    HeartbeatResponse,
    ManualRetryRequest,
    ManualRetryResponse,
    PruneRequest,
    PruneResponse,
    ReEnqueueAfterRequest,
    ReEnqueueAfterResponse,
    SecretsResponse,
    TriggerRequest,
    TriggerResponse,
    claimed_item,
    trigger_item,
)
from state_manager.services import runs, states

router = APIRouter()

_NO_STATE = "No such state in this namespace (its runtime's namespace)"
_FENCED = (
    "The caller no longer holds the state: its claim token is not the current one, its lease "
    "expired and the work was re-delivered, its run was cancelled (`code` STATE_CANCELLED) or the "
    "attempt timed out (`code` STATE_TIMED_OUT). Nothing changed."
)
_CANCELLED = {
    "detail": "State 665f1c2b9d3e4a0012345678 was cancelled: its run 0b7c0a57-5a43-4b1e-9f39-2f0d63a1c8e2 "
    "was cancelled",
    "code": "STATE_CANCELLED",
}
_REPORT_ERRORS = errors(
    400,
    404,
    422,
    e400="The state is not in a status this call applies to (e.g. not QUEUED)",
    e404=_NO_STATE,
    e422="A malformed body or state id",
) | error(409, _FENCED, _CANCELLED)


@router.post(
    "/graph/{graph_name}/trigger",
    tags=["runs"],
    summary="Trigger a graph (start a run)",
    responses=errors(
        400,
        404,
        409,
        422,
        e400="The graph is not VALID, a required store key is missing, or an input cannot be resolved",
        e404="No such graph, or (SEED form) an identifier that is not a node of it",
        e409="Requests with the same Idempotency-Key raced; send it again",
        e422="A malformed body, or an Idempotency-Key reused with another body",
    ),
)
async def trigger_graph(
    context: Context,
    namespace_name: NamespacePath,
    graph_name: GraphNamePath,
    body: Annotated[TriggerRequest | None, Body(openapi_examples=examples.TRIGGER)] = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> TriggerResponse:
    """Start a run of a VALID graph, in either form (never both):

    - **HEAD** `{"inputs", "store", "start_delay"}`: the root node starts, with its template
      inputs overridden by `inputs`; `store` fills the run store. An empty body (or none) is a
      HEAD trigger with defaults.
    - **SEED** `{"states": [{"identifier", "inputs"}]}`: each node named starts with the inputs
      given (the store still applies).

    The answer has the run id and the states created. With an `Idempotency-Key`, a repeat
    answers the first run and starts nothing."""
    request = body or TriggerRequest()
    if idempotency_key is None:
        run, created = await runs.trigger_graph(context, namespace_name, graph_name, request)
    else:
        run, created = await runs.trigger_once(context, namespace_name, graph_name, request, idempotency_key)
    return TriggerResponse(run_id=run.run_id, states=[trigger_item(s) for s in created])


@router.post(
    "/graph/{graph_name}/states/create",
    tags=["runs"],
    summary="Add states to a run you name (SEED)",
    responses=errors(
        400,
        404,
        409,
        422,
        e400="The graph is not VALID",
        e404="No such graph, or an identifier that is not a node of it",
        e409="The run id belongs to another graph or namespace",
    ),
)
async def create_states(
    context: Context,
    namespace_name: NamespacePath,
    graph_name: GraphNamePath,
    body: Annotated[CreateStatesRequest, Body(openapi_examples=examples.CREATE_STATES)],
) -> TriggerResponse:
    """SDK 0.0.2b1's way to start work: create states of the named template nodes in the run
    `run_id`, which is created on first use and may be given more states later."""
    created = await runs.create_states(context, namespace_name, graph_name, body)
    return TriggerResponse(run_id=body.run_id, states=[trigger_item(s) for s in created])


@router.post(
    "/states/enqueue",
    tags=[WORKER_TAG],
    summary="Claim due states (long-poll)",
    responses=errors(422),
)
async def enqueue_states(
    request: Request,
    context: Context,
    namespace_name: NamespacePath,
    body: Annotated[EnqueueRequest, Body(openapi_examples=examples.ENQUEUE)],
) -> EnqueueResponse:
    """Claim up to `batch_size` due states of the given nodes, oldest first. Each comes with a
    lease (`lease_expires_at`, `lease_ms`): report, signal or heartbeat it before the lease runs
    out, or the work is given to another worker. With `wait_ms` the call waits for work when
    none is due and answers as soon as some is (a long-poll); an empty `states` means none came
    in time."""
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
    return EnqueueResponse(
        count=len(claimed), namespace=namespace_name, states=[claimed_item(s) for s in claimed]
    )


_EXECUTED_ERRORS = _REPORT_ERRORS | errors(
    413,
    e413="The body is over MAX_REQUEST_BYTES, or a state this report creates would be over the "
    "store's document limit (the state then fails with NEXT_CREATED_ERROR)",
)


@router.post(
    "/state/{state_id}/executed",
    tags=[WORKER_TAG],
    summary="Report a state executed",
    responses=_EXECUTED_ERRORS,
)
@router.post(
    "/states/{state_id}/executed",
    tags=[WORKER_TAG],
    summary="Report a state executed (SEED path)",
    responses=_EXECUTED_ERRORS,
)
async def executed_state(
    context: Context,
    namespace_name: NamespacePath,
    state_id: StateId,
    body: Annotated[ExecutedRequest, Body(openapi_examples=examples.EXECUTED)],
    claim: ClaimToken = None,
) -> ExecutedResponse:
    """Record the node's outputs. The states that follow (next nodes, one per output when there
    are several, joins) are created before the answer. Sending the same report again is
    harmless: it answers the same and creates nothing twice."""
    await states.mark_executed(context, namespace_name, state_id, body.outputs, claim)
    return ExecutedResponse()


@router.post(
    "/state/{state_id}/errored",
    tags=[WORKER_TAG],
    summary="Report a state failed",
    responses=_REPORT_ERRORS,
)
@router.post(
    "/states/{state_id}/errored",
    tags=[WORKER_TAG],
    summary="Report a state failed (SEED path)",
    responses=_REPORT_ERRORS,
)
async def errored_state(
    context: Context,
    namespace_name: NamespacePath,
    state_id: StateId,
    body: Annotated[ErroredRequest, Body(openapi_examples=examples.ERRORED)],
    claim: ClaimToken = None,
) -> ErroredResponse:
    """Record a failure. Under the graph's retry policy a new attempt is scheduled
    (`RETRY_CREATED`), or the state ends `ERRORED` and its run fails. Repeating the same report
    answers the same."""
    details = body.details.model_dump() if body.details is not None else None
    retry_created = await states.mark_errored(context, namespace_name, state_id, body.error, claim, details)
    return ErroredResponse(
        status="RETRY_CREATED" if retry_created else "ERRORED", retry_created=retry_created
    )


@router.post(
    "/state/{state_id}/prune",
    tags=[WORKER_TAG],
    summary="Signal prune: end this branch",
    responses=_REPORT_ERRORS,
)
async def prune_state(
    context: Context,
    namespace_name: NamespacePath,
    state_id: StateId,
    body: Annotated[PruneRequest, Body(openapi_examples=examples.PRUNE)],
    claim: ClaimToken = None,
) -> PruneResponse:
    """The node decided that nothing follows it: the state ends `PRUNED` with `data` kept, and
    no next node runs on this branch (joins waiting for it are re-evaluated)."""
    pruned = await states.prune(context, namespace_name, state_id, body.data, claim)
    return PruneResponse(enqueue_after=pruned.enqueue_after)


@router.post(
    "/state/{state_id}/re-enqueue-after",
    tags=[WORKER_TAG],
    summary="Signal re-enqueue-after: run it again later",
    responses=_REPORT_ERRORS,
)
async def re_enqueue_after(
    context: Context,
    namespace_name: NamespacePath,
    state_id: StateId,
    body: Annotated[ReEnqueueAfterRequest, Body(openapi_examples=examples.RE_ENQUEUE_AFTER)],
    claim: ClaimToken = None,
) -> ReEnqueueAfterResponse:
    """Give the state back, to be claimed again (by any worker) `enqueue_after` milliseconds from
    now. Its lease ends; the next claim gets a new claim token."""
    state = await states.requeue_after(context, namespace_name, state_id, body.enqueue_after, claim)
    return ReEnqueueAfterResponse(enqueue_after=state.enqueue_after)


@router.post(
    "/state/{state_id}/manual-retry",
    tags=["runs"],
    summary="Retry a failed state",
    responses=errors(
        400,
        404,
        409,
        422,
        e400="The state did not fail (only ERRORED, NEXT_CREATED_ERROR, TIMEDOUT or CANCELLED)",
        e404=_NO_STATE,
        e409="A retry with this fanout_id exists, the state is already being retried, or its run "
        "was cancelled",
    ),
)
async def manual_retry(
    context: Context,
    namespace_name: NamespacePath,
    state_id: StateId,
    body: Annotated[ManualRetryRequest, Body(openapi_examples=examples.MANUAL_RETRY)],
) -> ManualRetryResponse:
    """An operator's retry: a new state copies the failed one (same node and inputs) and runs,
    and its run is open again. The answer is the new state's id."""
    retry = await states.manual_retry(context, namespace_name, state_id, body.fanout_id)
    status = "RETRY_CREATED" if retry.status == StateStatus.RETRY_CREATED else "CREATED"
    return ManualRetryResponse(id=str(retry.id), status=status)


@router.post(
    "/state/{state_id}/heartbeat",
    tags=[WORKER_TAG],
    summary="Extend the lease of a held state",
    responses=errors(
        404,
        409,
        422,
        e404=_NO_STATE,
        e409="The state is not held by the caller (not QUEUED, or fenced as for reports)",
        e422="A malformed state id",
    ),
)
async def heartbeat(
    context: Context, namespace_name: NamespacePath, state_id: StateId, claim: ClaimToken = None
) -> HeartbeatResponse:
    """Ours, for long-running nodes: the lease of a QUEUED state starts again from now. A node's
    `timeout_seconds` is not extended."""
    expires = await states.heartbeat(context, namespace_name, state_id, claim)
    return HeartbeatResponse(lease_expires_at=expires, lease_ms=context.lease_ms)


@router.get(
    "/state/{state_id}/secrets",
    tags=[WORKER_TAG],
    summary="Read the secrets for a held state",
    responses=errors(
        404,
        409,
        422,
        e404="No such state in this namespace, or its graph is gone",
        e409="The state is not QUEUED (not held), the caller is fenced, or the secrets were stored "
        "under another SECRETS_ENCRYPTION_KEY",
        e422="A malformed state id",
    ),
)
async def get_secrets(
    context: Context, namespace_name: NamespacePath, state_id: StateId, claim: ClaimToken = None
) -> SecretsResponse:
    """The plain-text secrets of the state's graph, only while the state is QUEUED (claimed),
    and with a claim token only for the current holder. The one way secrets leave the server."""
    return SecretsResponse(secrets=await states.get_secrets(context, namespace_name, state_id, claim))
