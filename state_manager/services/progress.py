"""Effects of a status write: fan-out copies, next states and retry copies here, then the joins
stage (`joins.py`); new states are built in `new_states.py`.

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

import time
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import structlog

from state_manager import metrics
from state_manager.clock import now_ms
from state_manager.db import queries
from state_manager.db.documents import GraphTemplate, Run, State
from state_manager.domain.effects import Effect, after_spawn, owed_after
from state_manager.domain.models import NodeTemplate, RetryPolicy
from state_manager.domain.planning import (
    PlanningError,
    referenced_identifiers,
    resolve_inputs,
)
from state_manager.domain.retry import retry_delay_ms
from state_manager.domain.status import Event, StateStatus
from state_manager.errors import TooLarge
from state_manager.services import gates, join_tally, run_status, writes
from state_manager.services.context import AppContext
from state_manager.services.graphs import graph_of, graph_shape
from state_manager.services.joins import (
    JoinsEvaluated,
    evaluate_joins,
    join_registration,
    may_settle_a_join,
    renew,
    reopen_above,
    supersede_joins_above,
)
from state_manager.services.new_states import (
    branch_outputs,
    check_size,
    fanout_copy_id,
    give_gates,
    new_state,
    state_oid,
    template_texts,
)

log = structlog.get_logger(__name__)

# `State.failure_kind`: why the server failed a state whose node did its work.
TOO_LARGE = "too_large"
EFFECTS = "effects"

_MAX_REASON_CHARS = 2000


async def settle(ctx: AppContext, state: State) -> State:
    """Complete whatever the last status write of `state` left to do (idempotent); returns the
    state as it is afterwards."""
    graph = await graph_of(ctx, state)
    current = state
    if current.pending_effect == Effect.SPAWN and current.rejoin:
        current = await _renew_join(ctx, current, graph)
    elif current.pending_effect == Effect.SPAWN:
        current = await _spawn(ctx, current, graph)
    if current.pending_effect == Effect.JOINS:
        evaluated = JoinsEvaluated()
        if not current.run_cancelled:
            evaluated = await evaluate_joins(ctx, current, graph)
        joins = evaluated.created
        for join in joins:
            if join.status == StateStatus.CANCELLED:  # a join that cannot run: its joins above
                await settle_isolated(ctx, join)
        then = owed_after(current.status, Effect.JOINS)
        spawned = _with_joins(current, evaluated.present)
        if then == Effect.TALLY and not joins and spawned is None:
            # It made no join and found none new: counted now and closed in one write (its
            # `spawned` cannot change any more; a repeat of this stage after a crash finds any
            # join another state made meanwhile, counted by that state: see decision 0020).
            await run_status.count_settled(current)
            closed = await queries.finish_effect(state_oid(current), Effect.JOINS, None)
            return closed or _with_effect(current, None)
        closed = await queries.finish_effect(state_oid(current), Effect.JOINS, then, spawned)
        await _undo_if_cancelled(ctx, closed, [join.spawn_key for join in joins])
        current = closed or _with_effect(current, then)
    if current.pending_effect == Effect.TALLY:
        # Counted settled in its run, with what its settle created: the run ends here when
        # nothing else in it is open (services/run_status.py).
        await run_status.count_settled(current)
        closed = await queries.finish_effect(state_oid(current), Effect.TALLY, None)
        current = closed or _with_effect(current, None)
    return current


def _with_joins(state: State, joins: list[State]) -> list[dict[str, Any]] | None:
    """The state's `spawned`, with the joins its evaluation found made (None: unchanged)."""
    if not joins:
        return None
    known = {entry["group"] for entry in state.spawned} | {state.owed_group}
    added = [join_registration(join) for join in joins if join_registration(join)["group"] not in known]
    return [*state.spawned, *added] if added else None


async def _renew_join(ctx: AppContext, join: State, graph: GraphTemplate | None) -> State:
    """The spawn stage of a join superseded by a repair: its next generation (see joins.renew)."""
    evaluated = JoinsEvaluated()
    await reopen_above(join, graph)  # done already, unless a crash came in between
    if not join.run_cancelled:
        evaluated = await renew(ctx, join, graph)
    made = evaluated.created
    for new_join in made:
        if new_join.status == StateStatus.CANCELLED:  # cannot run: its joins above
            await settle_isolated(ctx, new_join)
    # Counted below the anchors further up (a join inside another join's scope), then in its run.
    then = owed_after(join.status, Effect.SPAWN)
    if may_settle_a_join(join, join.status, graph):
        then = Effect.JOINS
    closed = await queries.finish_effect(
        state_oid(join), Effect.SPAWN, then, _with_joins(join, evaluated.present)
    )
    await _undo_if_cancelled(ctx, closed, [new_join.spawn_key for new_join in made])
    return closed or _with_effect(join, then)


async def _undo_if_cancelled(ctx: AppContext, closed: State | None, spawn_keys: list[str]) -> None:
    """Cancel what a settle wrote when its run was cancelled meanwhile.

    A cancel flags every state of the run, then cancels every waiting state. Each effect ends
    with a conditional write on the state that returns it (`closed`): a settle that wrote after
    the cancel's sweep sees the flag there and cancels its own writes, so nothing it created in
    a cancelled run ever runs.
    """
    if closed is not None and closed.run_cancelled and spawn_keys:
        await cancel_waiting(ctx, {"spawn_key": {"$in": spawn_keys}}, cancelled_reason(closed.run_id))


async def cancel_waiting(ctx: AppContext, query: dict[str, Any], reason: str) -> int:
    """Cancel the CREATED and QUEUED states matching `query` (their run was cancelled) and count
    them settled in their runs; how many this call cancelled."""
    cancelled = await queries.cancel_waiting(query, reason)
    metrics.states_cancelled(len(cancelled))
    for state in cancelled:
        if state.gates:
            await gates.release(ctx, state)  # a claimed one gives its slots back at once
    for run_id in {state.run_id for state in cancelled}:
        in_run = [state for state in cancelled if state.run_id == run_id]
        if await run_status.count_settled_together(run_id, in_run):
            await queries.finish_effects([state_oid(state) for state in in_run], Effect.TALLY)
            continue
        for state in in_run:
            await settle_isolated(ctx, state)
    return len(cancelled)


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
    failures = await queries.count_failure(state_oid(state), state.pending_effect)
    if state.pending_effect == Effect.TALLY:
        return  # its status is what its run counts: never changed here; recovery tries again
    if failures is not None and failures >= ctx.settings.effect_attempts:
        reason = f"its effects could not be written after {failures} attempts: {type(exc).__name__}: {exc}"
        await _give_up(ctx, state, reason, EFFECTS)


async def _give_up(ctx: AppContext, state: State, reason: str, kind: str) -> None:
    """Fail the state visibly; a failed "spawn" stage still gets its joins evaluated."""
    stage = state.pending_effect
    if stage == Effect.TALLY:
        return
    then = Effect.JOINS if stage == Effect.SPAWN else Effect.TALLY
    fields = {
        "error": f"State {state.id} ({state.identifier}) failed: {reason}"[:_MAX_REASON_CHARS],
        "failure_kind": kind,
        "pending_effect": then,
        "effect_failures": 0,
    }
    failed = await writes.transition(
        state_oid(state), Event.EFFECTS_FAILED, fields, extra_filter={"pending_effect": stage}
    )
    if failed is None:
        return  # someone else finished or failed it meanwhile
    log.error("effects_abandoned", state_id=str(state.id), run_id=state.run_id, stage=stage, reason=reason)
    if then is not None:
        await settle_isolated(ctx, failed)


async def _spawn(ctx: AppContext, state: State, graph: GraphTemplate | None) -> State:
    if state.status == StateStatus.EXECUTED:
        return await _advance_executed(ctx, state, graph)
    created = []
    spawned = None
    if state.status == StateStatus.RETRY_CREATED and not state.run_cancelled:
        await reopen_above(state, graph)  # an operator's retry: done already, unless a crash came in between
        created.append(await _insert_retry(ctx, state, graph))
        spawned = [{"group": retry_group(state), "open": 1, "settled": {}}]
        if state.rejoin_above:  # a repair: the joins above are made again once it settles
            for join in await supersede_joins_above(state, graph):
                await settle_isolated(ctx, join)
    then = after_spawn(state.status)
    if then == Effect.TALLY and may_settle_a_join(state, state.status, graph):
        then = Effect.JOINS  # counted below the anchors above it, with its retry, then in its run
    closed = await queries.finish_effect(state_oid(state), Effect.SPAWN, then, spawned)
    await _undo_if_cancelled(ctx, closed, created)
    return closed or _with_effect(state, then)


def retry_group(state: State) -> str:
    """The tally group of a state's retry (automatic or an operator's: a state is retried once)."""
    return f"r{state.id}"


def children_group(state: State) -> str:
    return f"c{state.id}"


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
    own_children = len(created)
    # An anchor (a join waits for what is below it) counts its children below it before they
    # are written; a copy is written with its own children counted below it (join_tally.py).
    anchor = state.join_tally and state.identifier in graph_shape(plan.graph).joins_on
    copies = _copies(ctx, plan, state, created, anchor)
    if state.run_cancelled:  # nothing new in a cancelled run
        copies, created, own_children = [], [], 0
    registration = _count_as_children(state, copies, created)
    if anchor:
        await join_tally.register_children(state_oid(state), children_group(state), own_children)
    await _insert_all(ctx, state, copies + created)
    for namespace in {child.namespace_name for child in created}:
        ctx.work.notify(namespace)
    written = [s.spawn_key for s in copies + created]
    spawned = [registration] if registration is not None else []
    if own_failure is not None:
        updated = await _next_failed(state, *own_failure, spawned)
    else:
        # Most states settle no join: skip the "joins" stage (one write less per state).
        joins = may_settle_a_join(state, StateStatus.SUCCESS, plan.graph)
        fields = {"pending_effect": Effect.JOINS if joins else Effect.TALLY, "spawned": spawned}
        updated = await writes.transition(state_oid(state), Event.NEXT_CREATED, fields)
    await _undo_if_cancelled(ctx, updated, written)
    if updated is None:  # another settle of the same state moved it on meanwhile
        updated = await queries.find_state(state_oid(state))
    return updated or state


def _copies(ctx: AppContext, plan: _Plan, state: State, created: list[State], anchor: bool) -> list[State]:
    """The fan-out copies of `state`, each with its next states added to `created` (a copy whose
    next states cannot be planned fails instead); an anchor's copies count theirs below them."""
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
            if anchor:
                below = join_tally.copy_fields(children_group(state), len(created), len(children))
                copy = copy.model_copy(update=below)
            created += children
        copies.append(copy)
    return copies


_INSERT_CHUNK = 1000


async def _insert_all(ctx: AppContext, owner: State, states: list[State]) -> None:
    """Bulk-insert `states` in chunks; a long insert keeps the owner's settle visibly alive, so
    the recovery pass does not take it over while it is still going on."""
    started = time.monotonic()
    for start in range(0, len(states), _INSERT_CHUNK):
        if time.monotonic() - started > ctx.settings.recovery_grace_seconds / 2:
            await queries.touch(state_oid(owner), Effect.SPAWN)
            started = time.monotonic()
        await writes.insert_many_once(states[start : start + _INSERT_CHUNK])


def _count_as_children(state: State, copies: list[State], created: list[State]) -> dict[str, Any] | None:
    """Give each new state its place in the run's tally (the group of `state`'s children) and
    return the group's registration, counted with `state`'s settlement; None when it made none."""
    if not copies and not created:
        return None
    settled: dict[str, int] = {}
    for copy in copies:
        settled[copy.status.value] = settled.get(copy.status.value, 0) + 1
    registration = {"open": len(created), "settled": settled}
    for index, child in enumerate(created):
        child.owed_group, child.owed_index, child.owed_registration = (
            children_group(state),
            index,
            registration,
        )
    return {"group": children_group(state), **registration}


async def _next_failed(
    state: State, reason: str, kind: str | None, spawned: list[dict[str, Any]] | None = None
) -> State | None:
    fields: dict[str, Any] = {"error": reason, "failure_kind": kind}
    if spawned:
        fields["spawned"] = spawned
    log.info("next_states_failed", state_id=str(state.id), run_id=state.run_id, error=reason)
    return await writes.transition(state_oid(state), Event.NEXT_FAILED, fields)


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
            # Written settled: counted with its original's settlement, owed nothing.
            "owed_group": "",
            "owed_index": 0,
            "owed_registration": {},
            "spawned": [],
            # An anchor of its own: nothing below it until its children are counted there.
            "join_generations": {},
            **join_tally.copy_fields(),
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
            child = new_state(state, self.graph, template, inputs, parents, key)
            give_gates(child, template, outputs, self.store, self.graph.store_config.default_values)
            check_size(ctx, child)
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
        needed |= referenced_identifiers(template_texts(template))
    needed.discard(state.identifier)
    ancestors = await branch_outputs(state, needed) if needed else {}
    ancestors.pop(state.identifier, None)
    uses_store = any(_uses_store(template_texts(template)) for template in templates)
    run = await queries.find_one(Run, {"run_id": state.run_id}) if uses_store else None
    return _Plan(graph, templates, ancestors, run.store if run else {})


def _uses_store(inputs: dict[str, Any]) -> bool:
    return any(isinstance(value, str) and "store." in value for value in inputs.values())


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
            "owed_group": retry_group(state),
            "rejoin_above": False,
            "owed_index": 0,
            "owed_registration": {"open": 1},
            "reopened_from": None,
            "spawned": [],
            "id": None,
            "revision_id": None,
            "status": StateStatus.CREATED,
            "outputs": {},
            "fanout_outputs": [],
            "data": {},
            "error": None,
            "error_details": None,
            "failure_kind": None,
            "effect_failures": 0,
            "claim_token": None,
            "spawn_key": key,
            "retry_count": count,
            "fanout_id": fanout,
            "manual_retry_fanout_id": manual or "",
            "manual_retry_request": None,
            "enqueue_after": now_ms() + delay,
            "not_before_ms": None,
            "lease_expires_at": None,
            "claimed_ms": None,
            "ended_ms": None,
            "tuned_lease_ms": None,
            "deadline_ms": None,
            "lease_lost": False,
            "pending_effect": None,
            # A new attempt of an anchor counts its own children below it, none of the old one's.
            **join_tally.copy_fields(),
        }
    )
    if await writes.insert_once(retry):
        ctx.work.notify(retry.namespace_name)
        log.info("retry_created", state_id=str(state.id), retry_count=count, delay_ms=delay)
    return key
