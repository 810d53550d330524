"""State use cases: claim work, report results and signals, read secrets.

Each write is one conditional update (`queries.transition`); when it matches nothing, the
state is re-read only to choose the right answer (404, 409 for a fenced worker, an idempotent
repeat, or 400 for a wrong status).

Every claim carries a token (`State.claim_token`, new per claim). A call that sends one (our
SDK does, in `x-exosphere-claim-token`) is applied only while that claim is the current one:
a replayed or late call from an earlier holder gets 409 and changes nothing. A call without a
token (the official SDKs) is fenced only once the lease it held has expired.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import uuid4

import structlog
from bson import ObjectId
from bson.errors import InvalidId

from state_manager import metrics
from state_manager.clock import now_ms
from state_manager.db import queries
from state_manager.db.documents import Run, State
from state_manager.domain.effects import Effect
from state_manager.domain.models import RetryPolicy
from state_manager.domain.queues import PROMOTE_EVERY_MS, queue_fields
from state_manager.domain.retry import retries_left
from state_manager.domain.status import Event, StateStatus, sources
from state_manager.errors import Conflict, InvalidTransition, NotFound, TooLarge, Unprocessable
from state_manager.services import gates, leases, queues, run_status, writes
from state_manager.services.context import AppContext, Final
from state_manager.services.graphs import find_graph, graph_of, graph_shape
from state_manager.services.joins import (
    current_join,
    join_blocked,
    may_settle_a_join,
    reopen_above,
    reopening,
    supersede,
)
from state_manager.services.progress import (
    EFFECTS,
    TOO_LARGE,
    cancel_waiting,
    cancelled_reason,
    manual_retry_key,
    settle_or_count,
)

log = structlog.get_logger(__name__)

NOT_FOUND = "State not found"
STATE_CANCELLED = "STATE_CANCELLED"
STATE_TIMED_OUT = "STATE_TIMED_OUT"
TIMEOUT = "timeout"  # State.failure_kind of an attempt that ran past its node's timeout


def parse_state_id(raw: str) -> ObjectId:
    try:
        return ObjectId(raw)
    except (InvalidId, TypeError) as exc:
        raise Unprocessable(f"Invalid state id '{raw}': expected a 24-character hex id") from exc


async def load_state(namespace: str, state_id: ObjectId) -> State:
    state = await queries.find_state(state_id)
    if state is None or state.namespace_name != namespace:
        raise NotFound(NOT_FOUND)
    return state


async def load_operated_state(namespace: str, state_id: ObjectId) -> State:
    """A state an operator acts on (a manual retry), found the way reads find it: by its graph's
    namespace, or (as upstream does) by its node's."""
    state = await queries.find_state(state_id)
    if state is None or namespace not in (state.graph_namespace, state.namespace_name):
        raise NotFound(NOT_FOUND)
    return state


async def load_held_state(namespace: str, state_id: ObjectId, claim: str | None) -> State:
    """Re-read a state after a conditional write missed; 409 if the caller's claim is not the
    state's current one (a later claim superseded it) or its lease expired."""
    return fence(await load_state(namespace, state_id), claim)


def fence(state: State, claim: str | None) -> State:
    """`state`, or 409 if the caller no longer holds it: see `load_held_state`."""
    if state.status == StateStatus.CANCELLED and state.run_cancelled:
        metrics.fenced(state, "run_cancelled")
        raise Conflict(
            f"State {state.id} was cancelled: its run {state.run_id} was cancelled", STATE_CANCELLED
        )
    if claim is not None and claim != state.claim_token:
        metrics.fenced(state, "claim_superseded")
        raise Conflict(
            f"State {state.id} is no longer held by this claim: it was claimed again since; "
            "this call changes nothing"
        )
    if state.lease_lost and state.failure_kind == TIMEOUT:
        metrics.fenced(state, "timed_out")
        raise Conflict(
            f"State {state.id} timed out: {state.error}; this call changes nothing", STATE_TIMED_OUT
        )
    if state.lease_lost:
        metrics.fenced(state, "lease_expired")
        raise Conflict(
            f"State {state.id} is no longer held by this worker: its lease expired and the work "
            "was re-delivered; this report changes nothing"
        )
    return state


async def _retry_allowed(ctx: AppContext, state: State) -> bool:
    """Whether the graph's retry policy allows another attempt after this one."""
    graph = await graph_of(ctx, state)
    return retries_left(graph.retry_policy if graph else RetryPolicy(), state.retry_count)


async def enqueue(
    ctx: AppContext,
    namespace: str,
    nodes: list[str],
    batch_size: int,
    wait_ms: int,
    gone: Callable[[], Awaitable[bool]] | None = None,
    tuned: bool = False,
) -> list[State]:
    """Claim up to `batch_size` due states, waiting up to `wait_ms` for the first one.

    `gone` tells whether the caller has disconnected: a long-poll abandoned by its client (a
    runtime shutting down) must not claim work that nobody will receive; what it claimed just
    as the client left is put back.
    """
    deadline = now_ms() + wait_ms
    await queues.record_poll(ctx, namespace, nodes)
    woken = True  # the first try, and each after a wake-up, looks for delayed states now due
    while True:
        seen = ctx.work.generation(namespace)
        await _promote_due(ctx, namespace, nodes, now=woken)
        claimed = await _claim(ctx, namespace, nodes, batch_size)
        if tuned:  # a client that never heartbeats: leases from the nodes' running times
            await leases.apply_tuned_leases(ctx, claimed)
        if claimed and gone is not None and await gone():
            await _release(ctx, namespace, claimed)
            return []
        remaining = deadline - now_ms()
        if claimed or remaining <= 0 or ctx.work.closing:
            cancelled = await run_status.runs_claimed({state.run_id for state in claimed})
            if cancelled:
                claimed = await _drop_cancelled(ctx, claimed, cancelled)
            if wait_ms > 0:
                await queues.record_poll(ctx, namespace, nodes)  # still asking at the end of a long-poll
            await _note_finals(ctx, claimed)
            metrics.enqueue_answered(namespace, claimed)
            return claimed
        woken = await ctx.work.wait(
            namespace, min(remaining / 1000, ctx.settings.long_poll_tick_seconds), seen
        )
        if gone is not None and await gone():
            return []


_CLAIM_ROUNDS = 3  # reads of the due states by one claim, when gates parked some of them


async def _claim(ctx: AppContext, namespace: str, nodes: list[str], limit: int) -> list[State]:
    """Claim up to `limit` due states of these nodes, first due first. States with flow-control
    gates (services/gates.py) pass them first; those held back are parked, and the due states
    after them are read in their place (a few rounds at most)."""
    token = uuid4().hex
    claimed: list[State] = []
    for _ in range(_CLAIM_ROUNDS):
        due = await queries.due(namespace, nodes, limit - len(claimed))
        if not any(doc.get("gates") for doc in due):
            return claimed + await queries.claim_due(due, ctx.lease_ms, token)
        admission = await gates.admit(ctx, due, token)
        got = await queries.claim_due(admission.passed, ctx.lease_ms, token)
        mine = {str(state.id) for state in got}
        # Taken by another replica between the read and the claim: what they took, given back.
        await gates.give_back(
            [doc for doc in admission.passed if str(doc["_id"]) not in mine], admission.taken
        )
        claimed += got
        if not admission.parked or len(claimed) >= limit:
            break
    return claimed


async def _promote_due(ctx: AppContext, namespace: str, nodes: list[str], *, now: bool) -> None:
    """Make these nodes' delayed states whose time has come claimable (domain/queues.py): `now`
    (a first try, or a wake-up: a delayed state may have become due), else at most every
    PROMOTE_EVERY_MS per namespace and process."""
    at = now_ms()
    key = (namespace, tuple(sorted(nodes)))
    if not now and at - ctx.promoted.get(key, 0) < PROMOTE_EVERY_MS:
        return
    ctx.promoted[key] = at
    if len(ctx.promoted) > 10_000:
        ctx.promoted.clear()
    await queries.promote(namespace, nodes)
    await gates.wake_due(ctx)  # and the gates whose time has come (one indexed range, any node)


_FINALS_KEPT = 100_000  # states claimed here and not reported yet; beyond, forgotten (a hint)


async def _note_finals(ctx: AppContext, claimed: list[State]) -> None:
    """Remember which of these states have a node with no next node but joins (a join is made
    by the joins stage, never by its predecessor): a report of one output then creates nothing,
    and is written SUCCESS at once (`mark_executed`). Read from the graph this process has
    cached; a report to another replica takes the usual two writes."""
    if len(ctx.finals) > _FINALS_KEPT:
        ctx.finals.clear()
    for state in claimed:
        graph = await graph_of(ctx, state)
        shape = graph_shape(graph) if graph is not None else None
        template = shape.by_id.get(state.identifier) if shape is not None else None
        if graph is None or shape is None or template is None:
            continue
        if any(shape.by_id[name].unites is None for name in template.next_nodes or []):
            continue
        joins = may_settle_a_join(state, StateStatus.SUCCESS, graph)
        effect = (Effect.JOINS if joins else Effect.TALLY).value
        ctx.finals[str(state.id)] = Final(state.graph_namespace, state.graph_name, graph.version, effect)


def _final_effect(ctx: AppContext, state_id: ObjectId, outputs: list[dict[str, Any]]) -> str | None:
    """The effect a report of `outputs` owes when it creates nothing (see `_note_finals`), if
    this process knows it; None otherwise. Only while the graph is the one it was judged on."""
    final = ctx.finals.pop(str(state_id), None)
    if final is None or len(outputs) > 1:
        return None
    graph = ctx.templates.get(final.namespace, final.graph, final.version)
    return final.effect if graph is not None and graph.version == final.version else None


async def _drop_cancelled(ctx: AppContext, claimed: list[State], cancelled_runs: set[str]) -> list[State]:
    """Cancel, instead of handing out, the states just claimed in runs that were cancelled."""
    for run_id in cancelled_runs:
        ids = [state.id for state in claimed if state.run_id == run_id]
        await cancel_waiting(ctx, {"_id": {"$in": ids}}, cancelled_reason(run_id))
    return [state for state in claimed if state.run_id not in cancelled_runs]


async def _release(ctx: AppContext, namespace: str, claimed: list[State]) -> None:
    for state in claimed:
        assert state.id is not None
        fields = {
            "enqueue_after": state.enqueue_after,
            "lease_expires_at": None,
            **queue_fields(
                StateStatus.CREATED,
                namespace,
                state.node_name,
                state.enqueue_after,
                now_ms(),
                state.priority_ms,
                state.not_before_ms,
            ),
        }
        await writes.transition(
            ObjectId(str(state.id)),
            Event.REQUEUE_AFTER,
            fields,
            namespace=namespace,
            claim=state.claim_token,
            ctx=ctx,
        )
    ctx.work.notify(namespace)


async def mark_executed(
    ctx: AppContext,
    namespace: str,
    state_id: ObjectId,
    outputs: list[dict[str, Any]],
    claim: str | None = None,
) -> None:
    """Record a node's outputs and write what follows (children, fan-out copies, joins).

    A repeat of the same report answers the same, after finishing any effect still pending;
    a report whose effects cannot be stored is refused (413) on every try.
    """
    fields: dict[str, Any] = {
        "outputs": outputs[0] if outputs else {},
        "fanout_outputs": outputs[1:],
        "lease_expires_at": None,
    }
    event = Event.EXECUTED
    if (final := _final_effect(ctx, state_id, outputs)) is not None:  # nothing to write after it
        event, fields["pending_effect"] = Event.EXECUTED_FINAL, final
    updated = await writes.transition(state_id, event, fields, namespace=namespace, claim=claim, ctx=ctx)
    if updated is not None:  # its running time (and, without heartbeats, its lease's fit)
        await leases.observe_success(ctx, updated, tokenless=claim is None)
    if updated is None:
        updated = await load_state(namespace, state_id)
        if claim is None and updated.lease_lost:
            await leases.observe_late(ctx, updated)  # slow, not dead: its lease grows
        fence(updated, claim)
        if updated.status not in _EXECUTED_STATUSES or not _same_outputs(updated, outputs):
            raise InvalidTransition("State is not queued")
    if updated.pending_effect is not None:
        updated = await settle_or_count(ctx, updated)
    _refuse_failed_effects(updated)


_EXECUTED_STATUSES = frozenset({StateStatus.EXECUTED, StateStatus.SUCCESS, StateStatus.NEXT_CREATED_ERROR})


def _same_outputs(state: State, outputs: list[dict[str, Any]]) -> bool:
    """Whether `outputs` is what the state was reported with (an empty report equals `[{}]`)."""
    return [state.outputs, *state.fanout_outputs] == (outputs or [{}])


def _refuse_failed_effects(state: State) -> None:
    """The answer to a report whose effects the server could not write."""
    if state.failure_kind == TOO_LARGE:
        raise TooLarge(state.error or "A document this report creates is over the store's size limit")
    if state.failure_kind == EFFECTS:
        raise Conflict(state.error or "The effects of this report could not be written")


async def mark_errored(
    ctx: AppContext,
    namespace: str,
    state_id: ObjectId,
    error: str,
    claim: str | None = None,
    details: dict[str, Any] | None = None,
) -> bool:
    """Record a failure (with its whole error when the runtime sent it: type, traceback, log
    lines); returns whether a retry was created under the graph's retry policy."""
    retry = await _retry_allowed(ctx, await load_state(namespace, state_id))
    event = Event.ERRORED_RETRY if retry else Event.ERRORED
    fields = {"error": error, "error_details": details, "lease_expires_at": None}
    updated = await writes.transition(state_id, event, fields, namespace=namespace, claim=claim, ctx=ctx)
    if updated is None:
        state = await load_held_state(namespace, state_id, claim)
        if state.error == error and state.status in (StateStatus.ERRORED, StateStatus.RETRY_CREATED):
            if state.pending_effect is not None:
                await settle_or_count(ctx, state)
            return state.status == StateStatus.RETRY_CREATED
        if state.status in (StateStatus.EXECUTED, StateStatus.SUCCESS, StateStatus.NEXT_CREATED_ERROR):
            raise InvalidTransition("State is already executed")
        raise InvalidTransition("State is not queued or executed")
    await settle_or_count(ctx, updated)
    return retry


async def prune(
    ctx: AppContext, namespace: str, state_id: ObjectId, data: dict[str, Any], claim: str | None = None
) -> State:
    fields = {"data": data, "lease_expires_at": None}
    updated = await writes.transition(
        state_id, Event.PRUNE, fields, namespace=namespace, claim=claim, ctx=ctx
    )
    if updated is None:
        state = await load_held_state(namespace, state_id, claim)
        if state.status == StateStatus.PRUNED and state.data == data:
            if state.pending_effect is not None:
                await settle_or_count(ctx, state)
            return state
        raise InvalidTransition("State is not queued")
    await settle_or_count(ctx, updated)
    return updated


async def requeue_after(
    ctx: AppContext, namespace: str, state_id: ObjectId, delay_ms: int, claim: str | None = None
) -> State:
    """Put a state back to be claimed again after `delay_ms`.

    With a claim token only the current holder of a QUEUED state may do it, and a repeat of its
    call answers the same; without one (the official SDKs) a CREATED state may be delayed too.
    """
    state = await load_state(namespace, state_id)  # its node names its queue
    now = now_ms()
    fields = {
        "enqueue_after": now + delay_ms,
        # The node's own "not before": its run's priority ranks it, never makes it due earlier.
        "not_before_ms": now + delay_ms,
        "lease_expires_at": None,
        **queue_fields(
            StateStatus.CREATED,
            namespace,
            state.node_name,
            now + delay_ms,
            now,
            state.priority_ms,
            now + delay_ms,
        ),
    }
    held = {"status": StateStatus.QUEUED.value} if claim is not None else None
    updated = await writes.transition(
        state_id, Event.REQUEUE_AFTER, fields, namespace=namespace, claim=claim, extra_filter=held, ctx=ctx
    )
    if updated is None:
        state = await load_held_state(namespace, state_id, claim)
        if claim is not None and state.status == StateStatus.CREATED:
            return state  # the same call again: it was already put back
        raise InvalidTransition(f"State is {state.status}: only a QUEUED or CREATED state can be re-enqueued")
    _wake_when_due(ctx, namespace, delay_ms)
    return updated


def _wake_when_due(ctx: AppContext, namespace: str, delay_ms: int) -> None:
    asyncio.get_running_loop().call_later(delay_ms / 1000, ctx.work.notify, namespace)


async def manual_retry(ctx: AppContext, namespace: str, state_id: ObjectId, fanout_id: str) -> State:
    """An operator's retry of a failed state; a duplicate, or one that lost a race, is a 409, and
    so is a retry in a cancelled run (a cancel that answered stops everything in its run).

    A retried branch is a repair: its spawn effect supersedes the joins above it once its retry
    is written, and they are made again from the branches as they will be. A retried join is
    made again, its inputs collected afresh (see `_retry_join`).
    """
    state = await load_operated_state(namespace, state_id)
    await _refuse_if_run_cancelled(state)
    if state.does_unites:
        return await _retry_join(ctx, state)
    updated = await mark_retried(ctx, state, fanout_id)
    await settle_or_count(ctx, updated)
    return await retry_of(updated, fanout_id)


async def mark_retried(ctx: AppContext, state: State, fanout_id: str) -> State:
    """The status write of an operator's retry (RETRY_CREATED, its retry still to be written by
    its spawn effect): counted open again in its run. Raises the refusals `manual_retry` answers.

    While it owes that effect, a join above it waits: `retry-failed` marks every branch it
    retries first, so that no join is made again from some of them only."""
    fields: dict[str, Any] = {"manual_retry_request": fanout_id, "rejoin_above": True, **reopening(state)}
    expect = {"run_cancelled": {"$ne": True}, "pending_effect": state.pending_effect}
    assert state.id is not None
    state_id = ObjectId(str(state.id))
    updated = await writes.transition(state_id, Event.MANUAL_RETRY, fields, extra_filter=expect)
    if updated is None:
        state = await load_operated_state(state.graph_namespace, state_id)
        if await queries.find_one(State, {"spawn_key": manual_retry_key(state, fanout_id)}) is not None:
            raise Conflict("Duplicate retry state detected")
        if state.status == StateStatus.RETRY_CREATED:
            raise Conflict(f"State {state.id} is already being retried")
        if state.run_cancelled:
            raise Conflict(f"Run {state.run_id} was cancelled: its states cannot be retried", STATE_CANCELLED)
        raise InvalidTransition(
            f"State is {state.status}: only ERRORED, NEXT_CREATED_ERROR, TIMEDOUT or CANCELLED "
            "states can be retried manually"
        )
    if updated.reopened_from is not None and state.pending_effect is None:
        graph = await graph_of(ctx, state)
        await reopen_above(updated, graph)  # counted open again below its anchors: their joins wait
        await run_status.reopen_state(updated)  # and in its run: its run goes on
    return updated


async def retry_of(retried: State, fanout_id: str) -> State:
    """The new attempt an operator's retry wrote."""
    retry = await queries.find_one(State, {"spawn_key": manual_retry_key(retried, fanout_id)})
    assert retry is not None
    return retry


async def _retry_join(ctx: AppContext, join: State) -> State:
    """A manual retry of a failed join makes it again (its next generation) with its inputs
    collected from its branches as they are now, not a copy of the old inputs. Refused (409,
    nothing changed) while the branches it needs have failed; made when they settle if some are
    still going. Returns the new join, or the superseded one while it waits."""
    if join.status not in sources(Event.MANUAL_RETRY):
        raise InvalidTransition(
            f"State is {join.status}: only ERRORED, NEXT_CREATED_ERROR, TIMEDOUT or CANCELLED "
            "states can be retried manually"
        )
    graph = await graph_of(ctx, join)
    blocked = await join_blocked(join, graph)
    if blocked is not None:
        raise Conflict(blocked)
    superseded = await supersede(join, graph)
    if superseded is None:
        current = await load_operated_state(join.graph_namespace, ObjectId(str(join.id)))
        if current.status == StateStatus.RETRY_CREATED:
            raise Conflict(f"Join {join.id} is already being made again")
        raise InvalidTransition(f"State is {current.status}: it cannot be retried")
    await settle_or_count(ctx, superseded)
    anchor_id = superseded.parents.get(_unites(graph, join) or "", "")
    anchor = await queries.find_state(ObjectId(anchor_id)) if anchor_id else None
    made = None if anchor is None else await current_join(anchor, join.identifier)
    return made if made is not None and made.id != join.id else superseded


def _unites(graph: Any, join: State) -> str | None:
    if graph is None:
        return None
    template = graph_shape(graph).by_id.get(join.identifier)
    return None if template is None or template.unites is None else template.unites.identifier


async def _refuse_if_run_cancelled(state: State) -> None:
    run = await queries.find_one(Run, {"run_id": state.run_id})
    if state.run_cancelled or (run is not None and run.cancelled_at is not None):
        raise Conflict(f"Run {state.run_id} was cancelled: its states cannot be retried", STATE_CANCELLED)


async def heartbeat(ctx: AppContext, namespace: str, state_id: ObjectId, claim: str | None = None) -> int:
    """Extend the lease of a state the caller still holds; returns the new expiry (epoch ms)."""
    expires = now_ms() + ctx.lease_ms
    # A heartbeat extends the lease only: a node's timeout (deadline_ms) stays where it is, and
    # the recovery pass fails an attempt past it.
    held: dict[str, Any] = {"namespace_name": namespace, "status": StateStatus.QUEUED.value}
    if claim is not None:
        held["claim_token"] = claim
    if not await queries.set_fields(state_id, {"lease_expires_at": expires}, held):
        state = await load_held_state(namespace, state_id, claim)
        raise Conflict(f"State is {state.status}, not QUEUED: there is no lease to extend")
    return expires


async def get_secrets(
    ctx: AppContext, namespace: str, state_id: ObjectId, claim: str | None = None
) -> dict[str, str]:
    """Plaintext secrets of the state's graph, only for a state that is currently claimed (and,
    with a claim token, only for the holder of the current claim)."""
    state = await load_held_state(namespace, state_id, claim)
    if state.status != StateStatus.QUEUED:
        raise Conflict(
            f"State is {state.status}: secrets are only given to the worker holding a QUEUED state"
        )
    graph = await find_graph(state.graph_namespace, state.graph_name)
    if graph is None:
        raise NotFound(f"Graph template {state.graph_name} not found in namespace {state.graph_namespace}")
    try:
        return {name: ctx.cipher.decrypt(token) for name, token in graph.secrets.items()}
    except ValueError as exc:
        log.error("secrets_undecryptable", graph=graph.name, namespace=graph.namespace)
        raise Conflict(
            f"The secrets of graph {graph.name} cannot be decrypted with this server's "
            "SECRETS_ENCRYPTION_KEY: the key changed since they were stored. An operator must "
            "restore the previous key or upsert the graph's secrets again."
        ) from exc


async def expire_lease(ctx: AppContext, state: State, *, timed_out: bool = False) -> None:
    """The worker holding `state` went silent (or, `timed_out`, ran past the node's timeout):
    fence it off, and re-deliver the work as a new attempt or fail it, by the retry policy."""
    retry = await _retry_allowed(ctx, state)
    if timed_out:
        limit = (state.timeout_ms or 0) / 1000
        reason = f"Timed out: node {state.node_name} ran longer than its timeout of {limit:g}s"
        passed = {"deadline_ms": {"$lt": now_ms()}}
    else:
        lease = (state.tuned_lease_ms or ctx.lease_ms) / 1000  # the lease this claim was given
        reason = f"Lease expired: no report from the worker within {lease:g}s"
        passed = {"lease_expires_at": {"$lt": now_ms()}}
    fields = {
        "error": reason + ("; the work was re-delivered" if retry else "; no retries left"),
        "lease_expires_at": None,
        "lease_lost": True,
        "failure_kind": TIMEOUT if timed_out else None,
    }
    event = Event.LEASE_EXPIRED_RETRY if retry else Event.LEASE_EXPIRED
    assert state.id is not None
    updated = await writes.transition(ObjectId(str(state.id)), event, fields, extra_filter=passed, ctx=ctx)
    if updated is not None:
        log.warning(
            "timed_out" if timed_out else "lease_expired",
            state_id=str(state.id),
            node=state.node_name,
            retry=retry,
        )
        await settle_or_count(ctx, updated)
