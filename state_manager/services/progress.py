"""Effects of a status write: fan-out clones, children, retry copies, joins.

A status write records what must follow it in `pending_effect` (the table is in
`domain/effects.py`: "spawn", then "joins"); `settle` carries it out. Every state it creates
has a deterministic `spawn_key` under a unique index, and fan-out copies have deterministic ids,
so `settle` can run twice (a repeated report, the recovery loop after a crash, two replicas) and
still create each state once, in one bulk insert. Requests call it before answering; the
recovery loop calls it for anything a crash interrupted.

One state's effects never stop anyone else's: `settle_isolated` logs a failure with its
traceback and counts it on the state; after `effect_attempts` failures (or at once, for a
document over the store's size limit) the state fails visibly with NEXT_CREATED_ERROR and the
reason in `error`, and its joins are evaluated, so nothing waits on it forever.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import structlog
from bson import ObjectId

from state_manager.clock import now_ms
from state_manager.db import queries
from state_manager.db.documents import GraphTemplate, Run, State
from state_manager.domain.effects import Effect, after_spawn
from state_manager.domain.models import NodeTemplate, RetryPolicy
from state_manager.domain.placeholders import OutputRef
from state_manager.domain.planning import (
    PlanningError,
    collected_refs,
    referenced_identifiers,
    resolve_inputs,
)
from state_manager.domain.retry import retry_delay_ms
from state_manager.domain.status import FAILED, UNSETTLED, Event, JoinVerdict, StateStatus, join_verdict
from state_manager.errors import TooLarge
from state_manager.services.context import AppContext
from state_manager.services.graphs import graph_shape, template_for

log = structlog.get_logger(__name__)

# `State.failure_kind`: why the server failed a state whose node did its work.
TOO_LARGE = "too_large"
EFFECTS = "effects"

_MAX_REASON_CHARS = 2000


async def settle(ctx: AppContext, state: State) -> State:
    """Complete whatever the last status write of `state` left to do (idempotent); returns the
    state as it is afterwards."""
    graph = await template_for(ctx, state.graph_namespace, state.graph_name, state.graph_version)
    current = state
    if current.pending_effect == Effect.SPAWN:
        current = await _spawn(ctx, current, graph)
    if current.pending_effect == Effect.JOINS:
        created = [] if current.run_cancelled else await evaluate_joins(ctx, current, graph)
        closed = await queries.finish_effect(_id(current), Effect.JOINS, None)
        await _undo_if_cancelled(closed, created)
        current = closed or _with_effect(current, None)
    return current


async def _undo_if_cancelled(closed: State | None, spawn_keys: list[str]) -> None:
    """Cancel what a settle wrote when its run was cancelled meanwhile.

    A cancel flags every state of the run, then cancels every waiting state. Each effect ends
    with a conditional write on the state that returns it (`closed`): a settle that wrote after
    the cancel's sweep sees the flag there and cancels its own writes, so nothing it created in
    a cancelled run ever runs.
    """
    if closed is not None and closed.run_cancelled and spawn_keys:
        await queries.cancel_waiting({"spawn_key": {"$in": spawn_keys}}, cancelled_reason(closed.run_id))


def cancelled_reason(run_id: str) -> str:
    return f"Cancelled: run {run_id} was cancelled"


async def settle_or_count(ctx: AppContext, state: State) -> State:
    """`settle`, and on failure log it, count it on the state (see `settle_isolated`) and raise."""
    try:
        return await settle(ctx, state)
    except Exception as exc:
        log.exception(
            "effects_failed",
            state_id=str(state.id),
            run_id=state.run_id,
            node=state.node_name,
            effect=state.pending_effect,
        )
        await _count_failure(ctx, state, exc)
        raise


async def settle_isolated(ctx: AppContext, state: State) -> bool:
    """`settle` with an error boundary: a failure is logged and counted, never raised.

    Returns whether the effects are done.
    """
    try:
        await settle_or_count(ctx, state)
    except Exception:  # logged and counted by settle_or_count
        return False
    return True


async def _count_failure(ctx: AppContext, state: State, exc: Exception) -> None:
    if state.pending_effect is None:
        return
    if isinstance(exc, TooLarge):  # it will never fit: no point in trying again
        await _give_up(ctx, state, exc.detail, TOO_LARGE)
        return
    failures = await queries.count_failure(_id(state), state.pending_effect)
    if failures is not None and failures >= ctx.settings.effect_attempts:
        reason = f"its effects could not be written after {failures} attempts: {type(exc).__name__}: {exc}"
        await _give_up(ctx, state, reason, EFFECTS)


async def _give_up(ctx: AppContext, state: State, reason: str, kind: str) -> None:
    """Fail the state visibly; a failed "spawn" stage still gets its joins evaluated."""
    stage = state.pending_effect
    then = Effect.JOINS if stage == Effect.SPAWN else None
    fields = {
        "error": f"State {state.id} ({state.identifier}) failed: {reason}"[:_MAX_REASON_CHARS],
        "failure_kind": kind,
        "pending_effect": then,
        "effect_failures": 0,
    }
    failed = await queries.transition(
        _id(state), Event.EFFECTS_FAILED, fields, extra_filter={"pending_effect": stage}
    )
    if failed is None:
        return  # someone else finished or failed it meanwhile
    log.error("effects_abandoned", state_id=str(state.id), run_id=state.run_id, stage=stage, reason=reason)
    if then is not None:
        await settle_isolated(ctx, failed)


def _id(state: State) -> ObjectId:
    assert state.id is not None
    return ObjectId(str(state.id))


async def _spawn(ctx: AppContext, state: State, graph: GraphTemplate | None) -> State:
    if state.status == StateStatus.EXECUTED:
        return await _advance_executed(ctx, state, graph)
    created = []
    if state.status == StateStatus.RETRY_CREATED and not state.run_cancelled:
        created.append(await _insert_retry(ctx, state, graph))
    then = after_spawn(state.status)
    closed = await queries.finish_effect(_id(state), Effect.SPAWN, then)
    await _undo_if_cancelled(closed, created)
    return closed or _with_effect(state, then)


def _with_effect(state: State, effect: Effect | None) -> State:
    updated: State = state.model_copy(update={"pending_effect": effect})
    return updated


async def _advance_executed(ctx: AppContext, state: State, graph: GraphTemplate | None) -> State:
    """Write a reported state's fan-out copies and every next state in bulk, then mark it done.

    The state stays EXECUTED (with "spawn" owed) until everything is written, so a join above
    it keeps waiting meanwhile; the copies are written in their final status, and their ids
    are derived from the state's, so a second settle writes exactly the same documents.
    """
    try:
        plan = await _plan(state, graph)
    except PlanningError as exc:  # the graph changed under the run: nothing can follow
        return await _next_failed(state, str(exc), None) or state
    # The state's own next states first, then its copies': claims then follow fan-out order.
    created: list[State] = []
    own_failure: tuple[str, str | None] | None = None
    try:
        created += plan.children_of(ctx, state)
    except PlanningError as exc:
        own_failure = (str(exc), None)
    except TooLarge as exc:
        own_failure = (exc.detail, TOO_LARGE)
    copies: list[State] = []
    for index, outputs in enumerate(state.fanout_outputs, start=1):
        copy = _fanout_copy(state, index, outputs)
        try:
            children = plan.children_of(ctx, copy)
        except PlanningError as exc:
            copy.status, copy.error = StateStatus.NEXT_CREATED_ERROR, str(exc)
        except TooLarge as exc:
            copy.status, copy.error, copy.failure_kind = StateStatus.NEXT_CREATED_ERROR, exc.detail, TOO_LARGE
        else:
            created += children
        copies.append(copy)
    if state.run_cancelled:  # nothing new in a cancelled run
        copies, created = [], []
    await _insert_all(ctx, state, copies + created)
    for namespace in {child.namespace_name for child in created}:
        ctx.work.notify(namespace)
    written = [s.spawn_key for s in copies + created]
    if own_failure is not None:
        updated = await _next_failed(state, *own_failure)
    else:
        # Most states settle no join: skip the "joins" stage (one write less per state).
        then = Effect.JOINS if _may_settle_a_join(state, StateStatus.SUCCESS, plan.graph) else None
        updated = await queries.transition(_id(state), Event.NEXT_CREATED, {"pending_effect": then})
    await _undo_if_cancelled(updated, written)
    if updated is None:  # another settle of the same state moved it on meanwhile
        updated = await queries.find_state(_id(state))
    return updated or state


_INSERT_CHUNK = 1000


async def _insert_all(ctx: AppContext, owner: State, states: list[State]) -> None:
    """Bulk-insert `states` in chunks; a long insert keeps the owner's settle visibly alive, so
    the recovery pass does not take it over while it is still going on."""
    started = time.monotonic()
    for start in range(0, len(states), _INSERT_CHUNK):
        if time.monotonic() - started > ctx.settings.recovery_grace_seconds / 2:
            await queries.touch(_id(owner), Effect.SPAWN)
            started = time.monotonic()
        await queries.insert_many_once(states[start : start + _INSERT_CHUNK])


async def _next_failed(state: State, reason: str, kind: str | None) -> State | None:
    fields = {"error": reason, "failure_kind": kind}
    log.info("next_states_failed", state_id=str(state.id), run_id=state.run_id, error=reason)
    return await queries.transition(_id(state), Event.NEXT_FAILED, fields)


def fanout_copy_id(state: State, index: int) -> ObjectId:
    """The id of the `index`-th fan-out copy of `state` (1-based): the same on every settle.

    It keeps the state's creation second (ids stay roughly in creation order) and takes the
    rest from a hash of the state's id and the index.
    """
    digest = hashlib.sha256(f"{state.id}:fanout:{index}".encode()).digest()
    return ObjectId(_id(state).binary[:4] + digest[:8])


def _fanout_copy(state: State, index: int, outputs: dict[str, Any]) -> State:
    copy: State = state.model_copy(
        update={
            "id": fanout_copy_id(state, index),
            "revision_id": None,
            "status": StateStatus.SUCCESS,
            "outputs": outputs,
            "fanout_outputs": [],
            "output_index": index,
            "spawn_key": f"{state.id}:fanout:{index}",
            "fanout_id": str(uuid4()),
            "retry_count": 0,
            "pending_effect": None,
        }
    )
    return copy


@dataclass(frozen=True)
class _Plan:
    """What planning the next states of one reported state (and its copies) needs, read once."""

    graph: GraphTemplate
    templates: list[NodeTemplate]
    ancestors: dict[str, dict[str, Any]]  # outputs of the ancestors the templates refer to
    store: dict[str, str]

    def children_of(self, ctx: AppContext, state: State) -> list[State]:
        """The next states of `state` (the reported one or a fan-out copy).

        Raises:
            PlanningError: An input cannot be resolved.
            TooLarge: A next state would be over the store's document size limit.
        """
        parents = {**state.parents, state.identifier: str(state.id)}
        outputs = {**self.ancestors, state.identifier: state.outputs}
        children = []
        for template in self.templates:
            inputs = resolve_inputs(
                template.identifier,
                template.inputs,
                outputs,
                self.store,
                self.graph.store_config.default_values,
            )
            key = f"{state.id}:next:{template.identifier}"
            child = _new_state(state, self.graph, template, inputs, parents, key)
            _check_size(ctx, child)
            children.append(child)
        return children


async def _plan(state: State, graph: GraphTemplate | None) -> _Plan:
    """Read what the next states of `state` need: only the ancestors and the store they use.

    Raises:
        PlanningError: The graph, or this node in it, no longer exists.
    """
    if graph is None:
        raise PlanningError(f"Graph template {state.graph_name} no longer exists")
    shape = graph_shape(graph)
    node = shape.by_id.get(state.identifier)
    if node is None:
        raise PlanningError(f"Node {state.identifier} is no longer in graph {state.graph_name}")
    # Join nodes are created by the join evaluator, never by one of their predecessors.
    templates = [shape.by_id[n] for n in node.next_nodes or [] if shape.by_id[n].unites is None]
    needed: set[str] = set()
    for template in templates:
        needed |= referenced_identifiers(template.inputs)
    needed.discard(state.identifier)
    ancestors = await branch_outputs(state, needed) if needed else {}
    ancestors.pop(state.identifier, None)
    uses_store = any(_uses_store(template.inputs) for template in templates)
    run = await queries.find_one(Run, {"run_id": state.run_id}) if uses_store else None
    return _Plan(graph, templates, ancestors, run.store if run else {})


def _uses_store(inputs: dict[str, Any]) -> bool:
    return any(isinstance(value, str) and "store." in value for value in inputs.values())


def _check_size(ctx: AppContext, state: State) -> None:
    """Raise TooLarge when `state` would be over the store's document limit.

    Only a state whose text is big enough to come near the limit is encoded to measure it.
    """
    limit = ctx.settings.max_document_bytes
    text = sum(len(k) + len(str(v)) for k, v in state.inputs.items()) + sum(
        len(k) + len(v) for k, v in state.parents.items()
    )
    if 4 * text + 64 * 1024 < limit:  # UTF-8 takes at most 4 bytes a character
        return
    size = queries.encoded_size(state.model_dump(exclude={"id", "revision_id"}))
    if size > limit:
        raise TooLarge(
            f"The inputs of node {state.identifier} would make a state of {size} bytes, over the "
            f"store's limit of {limit} bytes"
        )


def _new_state(
    origin: State,
    graph: GraphTemplate,
    template: NodeTemplate,
    inputs: dict[str, str],
    parents: dict[str, str],
    key: str,
) -> State:
    return State(
        node_name=template.node_name,
        namespace_name=template.namespace,
        identifier=template.identifier,
        graph_name=origin.graph_name,
        graph_namespace=origin.graph_namespace,
        graph_version=graph.version,
        fanout_path=[*origin.fanout_path, origin.output_index],
        run_id=origin.run_id,
        inputs=inputs,
        parents=parents,
        spawn_key=key,
        enqueue_after=now_ms(),
        timeout_ms=template.timeout_seconds * 1000 if template.timeout_seconds else None,
        fanout_id=str(uuid4()),
    )


async def branch_outputs(current: State, needed: set[str]) -> dict[str, dict[str, Any]]:
    """Outputs by identifier of `current` and of the ancestors in `needed` on its branch."""
    outputs: dict[str, dict[str, Any]] = {current.identifier: current.outputs}
    ids = [ObjectId(current.parents[name]) for name in needed if name in current.parents]
    if ids:
        for ancestor in await queries.find_states({"_id": {"$in": ids}}):
            outputs[ancestor.identifier] = ancestor.outputs
    return outputs


def manual_retry_key(state: State, fanout_id: str) -> str:
    return f"{state.id}:manual:{fanout_id}"


async def _insert_retry(ctx: AppContext, state: State, graph: GraphTemplate | None) -> str:
    """Insert the next attempt of a RETRY_CREATED state; returns its spawn key."""
    manual = state.manual_retry_request
    if manual is not None:
        # An operator's retry: runs now and keeps the automatic retry budget where it was.
        fanout, count = manual, state.retry_count
        key, delay = manual_retry_key(state, manual), 0
    else:
        policy = graph.retry_policy if graph else RetryPolicy()
        fanout = state.fanout_id
        count = state.retry_count + 1
        key, delay = f"{state.id}:retry", retry_delay_ms(policy, count)
    retry = state.model_copy(
        update={
            "id": None,
            "revision_id": None,
            "status": StateStatus.CREATED,
            "outputs": {},
            "fanout_outputs": [],
            "data": {},
            "error": None,
            "failure_kind": None,
            "effect_failures": 0,
            "claim_token": None,
            "spawn_key": key,
            "retry_count": count,
            "fanout_id": fanout,
            "manual_retry_fanout_id": manual or "",
            "manual_retry_request": None,
            "enqueue_after": now_ms() + delay,
            "lease_expires_at": None,
            "claimed_ms": None,
            "tuned_lease_ms": None,
            "deadline_ms": None,
            "lease_lost": False,
            "pending_effect": None,
        }
    )
    if await queries.insert_once(retry):
        ctx.work.notify(retry.namespace_name)
        log.info("retry_created", state_id=str(state.id), retry_count=count, delay_ms=delay)
    return key


def _anchors(state: State, status: StateStatus) -> list[tuple[str, str]]:
    """(identifier, state id) of the states whose joins a state in `status` may settle."""
    anchors = list(state.parents.items())
    if status == StateStatus.SUCCESS:
        anchors.append((state.identifier, str(state.id)))
    return anchors


def _may_settle_a_join(state: State, status: StateStatus, graph: GraphTemplate) -> bool:
    shape = graph_shape(graph)
    return any(identifier in shape.joins_on for identifier, _ in _anchors(state, status))


async def evaluate_joins(ctx: AppContext, state: State, graph: GraphTemplate | None) -> list[str]:
    """Re-evaluate every join whose `unites` anchor is this state or one of its ancestors (and,
    for a fan-out, each of its copies: they were written with it); the spawn keys of the joins
    it created."""
    if graph is None:
        return []
    created: list[str] = []
    shape = graph_shape(graph)
    anchors = _anchors(state, state.status)
    if state.identifier in shape.joins_on:
        copies = range(1, len(state.fanout_outputs) + 1)
        anchors += [(state.identifier, str(fanout_copy_id(state, index))) for index in copies]
    for anchor_identifier, anchor_id in anchors:
        joins = shape.joins_on.get(anchor_identifier, [])
        for join_identifier in joins:
            join = shape.by_id[join_identifier]
            key = await _evaluate_join(ctx, graph, join, anchor_identifier, anchor_id, joins, state.run_id)
            if key is not None:
                created.append(key)
    return created


async def _evaluate_join(
    ctx: AppContext,
    graph: GraphTemplate,
    join: NodeTemplate,
    anchor_identifier: str,
    anchor_id: str,
    sibling_joins: list[str],
    run_id: str,
) -> str | None:
    """Create the join for one anchor state once everything below the anchor has settled;
    returns its spawn key when this call created it.

    The scope leaves out every join on the same anchor and their descendants: those joins are
    independent of each other, and none waits for another.
    """
    scope = {
        "run_id": run_id,
        f"parents.{anchor_identifier}": anchor_id,
        "identifier": {"$nin": sibling_joins},
        **{f"parents.{name}": {"$exists": False} for name in sibling_joins},
    }
    # One state still going is enough to wait: found with a probe on the (run_id, status) index,
    # so a fan-out of n branches costs n probes, not n reads of the whole scope. A retry whose
    # copy is not written yet is not settled either. (Two probes rather than one `$or`, which
    # the embedded engine evaluates by scanning.)
    going: list[dict[str, Any]] = [
        {"status": {"$in": [s.value for s in UNSETTLED]}},
        {"status": StateStatus.RETRY_CREATED.value, "pending_effect": Effect.SPAWN.value},
    ]
    for probe in going:
        if await queries.exists({**scope, **probe}):
            return None
    key = f"{anchor_id}:join:{join.identifier}"
    if await queries.find_one(State, {"spawn_key": key}) is not None:
        return None
    anchor = await queries.find_state(ObjectId(anchor_id))
    if anchor is None or anchor.status != StateStatus.SUCCESS:
        return None
    failures = await queries.statuses(
        {"run_id": anchor.run_id, **scope, "status": {"$in": [s.value for s in FAILED]}}
    )
    assert join.unites is not None
    verdict = join_verdict(join.unites.strategy, [doc["status"] for doc in failures])
    error = None
    if verdict == JoinVerdict.FAIL:
        failed = sorted({doc["identifier"] for doc in failures})
        error = (
            f"Join {join.identifier} (unites {anchor_identifier}, {join.unites.strategy}) cannot run: "
            f"states below {anchor_identifier} failed: {', '.join(failed)}"
        )
    return key if await _create_join(ctx, graph, join, anchor, key, error) else None


async def _collect(anchor: State, join_identifier: str, refs: set[OutputRef]) -> dict[OutputRef, list[Any]]:
    """For each `${{ x.outputs.f[*] }}` of a join: field f of every successful x below the anchor,
    in fan-out order (nested fan-outs by their index path). Failed and pruned branches are left
    out (a join under ALL_SUCCESS runs only when there are none).

    Raises:
        PlanningError: A successful state did not output the field.
    """
    collected: dict[OutputRef, list[Any]] = {}
    for identifier in {ref.identifier for ref in refs}:
        query = {
            "run_id": anchor.run_id,
            f"parents.{anchor.identifier}": str(anchor.id),
            "identifier": identifier,
            "status": StateStatus.SUCCESS.value,
        }
        states = sorted(await queries.find_states(query), key=lambda s: [*s.fanout_path, s.output_index])
        for ref in (r for r in refs if r.identifier == identifier):
            missing = [s.id for s in states if ref.field not in s.outputs]
            if missing:
                raise PlanningError(
                    f"Join {join_identifier} collects {ref}, but {len(missing)} {identifier} state(s) "
                    f"did not output '{ref.field}' (e.g. {missing[0]})"
                )
            collected[ref] = [s.outputs[ref.field] for s in states]
    return collected


async def _create_join(
    ctx: AppContext, graph: GraphTemplate, join: NodeTemplate, anchor: State, key: str, error: str | None
) -> bool:
    run = await queries.find_one(Run, {"run_id": anchor.run_id})
    outputs = await branch_outputs(anchor, referenced_identifiers(join.inputs))
    inputs: dict[str, str] = {}
    try:
        collected = await _collect(anchor, join.identifier, collected_refs(join.inputs))
        inputs = resolve_inputs(
            join.identifier,
            join.inputs,
            outputs,
            run.store if run else {},
            graph.store_config.default_values,
            collected,
        )
    except PlanningError as exc:
        error = error or str(exc)
    parents = {**anchor.parents, anchor.identifier: str(anchor.id)}
    state = _new_state(anchor, graph, join, inputs, parents, key)
    state.does_unites = True
    try:
        _check_size(ctx, state)
    except TooLarge as exc:
        # Too large to store with its inputs: created without them, CANCELLED, with the reason.
        error, state.inputs = exc.detail, {}
    if error is not None:
        # A join that cannot run is created CANCELLED with the reason; it keeps its inputs so
        # that an operator's manual retry can run it once the branches are fixed.
        state.status = StateStatus.CANCELLED
        state.error = error
        state.pending_effect = Effect.JOINS
    if not await queries.insert_once(state):
        return False
    log.info("join_created", join=join.identifier, run_id=anchor.run_id, status=state.status.value)
    if error is None:
        ctx.work.notify(state.namespace_name)
    else:
        await settle_isolated(ctx, state)
    return True
