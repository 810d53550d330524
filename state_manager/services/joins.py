"""The joins stage: create a join once everything below its anchor has settled.

A join (`unites`) is re-evaluated whenever a state in its scope settles, so it fires or fails,
never hangs (decision 0004). While anything in the scope is still going, one indexed probe is
enough to wait; the scope is read only to decide a join that can be decided.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog
from bson import ObjectId

from state_manager.clock import now_ms
from state_manager.db import queries
from state_manager.db.documents import GraphTemplate, Run, State
from state_manager.domain.effects import Effect
from state_manager.domain.models import NodeTemplate
from state_manager.domain.placeholders import OutputRef
from state_manager.domain.planning import (
    PlanningError,
    collected_refs,
    referenced_identifiers,
    resolve_inputs,
)
from state_manager.domain.status import (
    FAILED,
    TERMINAL,
    UNSETTLED,
    Event,
    JoinVerdict,
    StateStatus,
    join_verdict,
)
from state_manager.errors import TooLarge
from state_manager.services import run_status, writes
from state_manager.services.context import AppContext
from state_manager.services.graphs import graph_shape
from state_manager.services.new_states import branch_outputs, check_size, fanout_copy_id, new_state

log = structlog.get_logger(__name__)


def _anchors(state: State, status: StateStatus) -> list[tuple[str, str]]:
    """(identifier, state id) of the states whose joins a state in `status` may settle."""
    anchors = list(state.parents.items())
    if status == StateStatus.SUCCESS:
        anchors.append((state.identifier, str(state.id)))
    return anchors


def may_settle_a_join(state: State, status: StateStatus, graph: GraphTemplate) -> bool:
    shape = graph_shape(graph)
    return any(identifier in shape.joins_on for identifier, _ in _anchors(state, status))


@dataclass
class JoinsEvaluated:
    created: list[State] = field(default_factory=list)  # the joins this call created
    waiting: bool = False  # a join still waits for a state that is going: the run goes on
    # Every join this evaluation found made (by this call or another): counted in the run with
    # the evaluating state's settlement (once: see domain/tally.py).
    present: list[State] = field(default_factory=list)


async def evaluate_joins(ctx: AppContext, state: State, graph: GraphTemplate | None) -> JoinsEvaluated:
    """Re-evaluate every join whose `unites` anchor is this state or one of its ancestors (and,
    for a fan-out, each of its copies: they were written with it)."""
    outcome = JoinsEvaluated()
    if graph is None:
        return outcome
    shape = graph_shape(graph)
    anchors = _anchors(state, state.status)
    if state.identifier in shape.joins_on:
        copies = range(1, len(state.fanout_outputs) + 1)
        anchors += [(state.identifier, str(fanout_copy_id(state, index))) for index in copies]
    for anchor_identifier, anchor_id in anchors:
        joins = shape.joins_on.get(anchor_identifier, [])
        for join_identifier in joins:
            join = shape.by_id[join_identifier]
            made, waiting, present = await _evaluate_join(
                ctx, graph, join, anchor_identifier, anchor_id, joins, state.run_id
            )
            outcome.waiting = outcome.waiting or waiting
            if made is not None:
                outcome.created.append(made)
            if present is not None:
                outcome.present.append(present)
    return outcome


async def _evaluate_join(
    ctx: AppContext,
    graph: GraphTemplate,
    join: NodeTemplate,
    anchor_identifier: str,
    anchor_id: str,
    sibling_joins: list[str],
    run_id: str,
) -> tuple[State | None, bool, State | None]:
    """Create the join for one anchor state once everything below the anchor has settled;
    returns it when this call created it, whether the join still waits, and the join if it is
    made (by this call or another).

    The scope leaves out every join on the same anchor and their descendants: those joins are
    independent of each other, and none waits for another.
    """
    scope = _Scope(run_id, anchor_identifier, anchor_id, sibling_joins)
    if await _scope_going(scope):
        return None, True, None
    anchor = await queries.find_state(ObjectId(anchor_id))
    if anchor is None or anchor.status != StateStatus.SUCCESS:
        return None, False, None
    key = join_key(anchor_id, join.identifier, anchor.join_generations.get(join.identifier, 0))
    existing = await queries.find_one(State, {"spawn_key": key})
    if existing is not None:
        return None, False, existing
    failures = await _in_scope(scope, {"status": {"$in": [s.value for s in FAILED]}})
    assert join.unites is not None
    verdict = join_verdict(join.unites.strategy, [doc["status"] for doc in failures])
    error = None
    if verdict == JoinVerdict.FAIL:
        failed = sorted({doc["identifier"] for doc in failures})
        error = (
            f"Join {join.identifier} (unites {anchor_identifier}, {join.unites.strategy}) cannot run: "
            f"states below {anchor_identifier} failed: {', '.join(failed)}"
        )
    made = await _create_join(ctx, graph, join, anchor, key, error)
    if made is None:  # made by another writer just now
        return None, False, await queries.find_one(State, {"spawn_key": key})
    return made, False, made


@dataclass(frozen=True)
class _Scope:
    """The states a join above the anchor state `anchor_id` waits for: everything below the
    anchor but the joins on the same anchor and what follows them (those joins are independent:
    none waits for another). Said once, to the store (`query`) and to a state read (`contains`)."""

    run_id: str
    anchor_identifier: str
    anchor_id: str
    sibling_joins: list[str]

    @property
    def query(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            f"parents.{self.anchor_identifier}": self.anchor_id,
            "identifier": {"$nin": self.sibling_joins},
            **{f"parents.{name}": {"$exists": False} for name in self.sibling_joins},
        }

    def contains(self, doc: dict[str, Any]) -> bool:
        """Whether a state (a document with `identifier` and `parents`) is in the scope."""
        parents = doc.get("parents") or {}
        return (
            parents.get(self.anchor_identifier) == self.anchor_id
            and doc.get("identifier") not in self.sibling_joins
            and not any(name in parents for name in self.sibling_joins)
        )


# States still going, read a probe's worth at a time: in a fan-out, the first one read is in the
# join's scope and answers at once.
_PROBE = 64
_GOING: list[dict[str, Any]] = [
    {"status": {"$in": [s.value for s in UNSETTLED]}},
    # A retry whose copy is not written yet is not settled either.
    {"status": StateStatus.RETRY_CREATED.value, "pending_effect": Effect.SPAWN.value},
]


# The order the two are read in. A branch moves from the first (its attempt QUEUED) to the second
# (RETRY_CREATED, its next attempt owed) and back to the first (the next attempt, CREATED), each
# step a separate write: a branch that moved while one read was going on is found by a later one.
_GOING_READS = (_GOING[0], _GOING[1], _GOING[0])


async def _scope_going(scope: _Scope) -> bool:
    """Whether anything in the join's scope is still going: the run's states still going (on
    plain fields, cheap on every store), checked against the scope here; only when a probe's
    worth of them are all outside the scope is the store asked for the scope itself. The last two
    reads are made only when the first found nothing going in the scope (the last arrivals)."""
    for going in _GOING_READS:
        found = await queries.run_states_where(
            scope.run_id, going, limit=_PROBE, fields=("identifier", "parents")
        )
        if any(scope.contains(doc) for doc in found):
            return True
        if len(found) == _PROBE and await queries.exists({**scope.query, **going}):
            return True
    return False


async def _in_scope(scope: _Scope, match: dict[str, Any]) -> list[dict[str, Any]]:
    """The states of the join's scope matching `match` (plain fields), as documents."""
    found = await queries.run_states_where(scope.run_id, match, fields=("identifier", "parents", "status"))
    return [doc for doc in found if scope.contains(doc)]


async def join_blocked(join: State, graph: GraphTemplate | None) -> str | None:
    """Why a join cannot be made again now (its branches failed under ALL_SUCCESS, with nothing
    of them retried), or None."""
    anchor_identifier = _anchor_of(join, graph)
    if graph is None or anchor_identifier is None:
        return f"Join {join.identifier} is no longer in graph {join.graph_name}: it cannot be made again"
    template = graph_shape(graph).by_id[join.identifier]
    assert template.unites is not None
    if template.unites.strategy != "ALL_SUCCESS":
        return None
    joins = graph_shape(graph).joins_on.get(anchor_identifier, [])
    scope = _Scope(join.run_id, anchor_identifier, join.parents[anchor_identifier], joins)
    if await _scope_going(scope):
        return None  # a branch is going (e.g. retried): the join is made when it settles
    failures = await _in_scope(scope, {"status": {"$in": [s.value for s in FAILED]}})
    if not failures:
        return None
    failed = ", ".join(sorted({doc["identifier"] for doc in failures}))
    return (
        f"Join {join.identifier} cannot run: states below {anchor_identifier} failed ({failed}) and "
        "its strategy is ALL_SUCCESS; retry them first (retry-failed retries them and the join)"
    )


def join_group(key: str) -> str:
    """The tally group of a join (a group of one), named after its spawn key."""
    return "j" + key.replace(":", "_")


def join_registration(join: State) -> dict[str, Any]:
    return {"group": join.owed_group or join_group(join.spawn_key), "open": 1, "settled": {}}


def join_key(anchor_id: str, join_identifier: str, generation: int) -> str:
    """The spawn key of one generation of a join above one anchor state: the first is made when
    the branches below the anchor have settled, each later one after a repair of a branch."""
    key = f"{anchor_id}:join:{join_identifier}"
    return key if generation == 0 else f"{key}:{generation}"


async def current_join(anchor: State, join_identifier: str) -> State | None:
    """The join's current generation above `anchor`, if it was made."""
    key = join_key(str(anchor.id), join_identifier, anchor.join_generations.get(join_identifier, 0))
    return await queries.find_one(State, {"spawn_key": key})


async def supersede_joins_above(state: State, graph: GraphTemplate | None) -> list[State]:
    """A branch below these joins is being repaired (`state` was retried): supersede each join's
    current generation above it, so that the join is made again from the branches as they will be
    (a join that has not been made yet needs nothing). Returns the superseded joins."""
    if graph is None:
        return []
    shape = graph_shape(graph)
    superseded = []
    for anchor_identifier, anchor_id in state.parents.items():
        for join_identifier in shape.joins_on.get(anchor_identifier, []):
            anchor = await queries.find_state(ObjectId(anchor_id))
            join = None if anchor is None else await current_join(anchor, join_identifier)
            if join is not None and (made := await supersede(join)) is not None:
                superseded.append(made)
    return superseded


async def supersede(join: State) -> State | None:
    """Mark one generation of a join superseded (REJOIN); its "spawn" effect then makes the next
    one (`renew`). None if it cannot be (being settled, or superseded already)."""
    fields = {"rejoin": True, "lease_expires_at": None, **reopening(join)}
    expect = {"pending_effect": join.pending_effect}
    updated = await writes.transition(ObjectId(str(join.id)), Event.REJOIN, fields, extra_filter=expect)
    if updated is None:
        return None
    log.info("join_superseded", join=join.identifier, run_id=join.run_id, generation=join.join_generation)
    if updated.reopened_from is not None and join.pending_effect is None:
        await run_status.reopen_state(updated)  # counted open again: its run goes on
    return updated


def reopening(state: State) -> dict[str, Any]:
    """The fields that count a settled state open again when it is retried or superseded: a slot
    of its own (its old one was cleared when it settled) and the status it was counted in. A
    state not settled yet (still owing an effect, or not terminal) keeps its slot."""
    if state.pending_effect is not None or state.status not in TERMINAL:
        return {}
    return {
        "reopened_from": state.status.value,
        "owed_group": f"o{state.id}",
        "owed_index": 0,
        "owed_registration": {"open": 1},
        "spawned": [],
    }


async def renew(ctx: AppContext, join: State, graph: GraphTemplate | None) -> JoinsEvaluated:
    """The "spawn" effect of a superseded join: move its anchor on to the next generation (one
    conditional write, so a repeat moves it once), then evaluate the join there: it is made now
    if its branches have settled, else when the last of them settles."""
    outcome = JoinsEvaluated()
    anchor_identifier = _anchor_of(join, graph)
    if graph is None or anchor_identifier is None:
        return outcome
    anchor_id = join.parents[anchor_identifier]
    await queries.next_join_generation(ObjectId(anchor_id), join.identifier, join.join_generation)
    shape = graph_shape(graph)
    joins = shape.joins_on.get(anchor_identifier, [])
    made, outcome.waiting, present = await _evaluate_join(
        ctx, graph, shape.by_id[join.identifier], anchor_identifier, anchor_id, joins, join.run_id
    )
    if made is not None:
        outcome.created.append(made)
    if present is not None and present.id != join.id:
        outcome.present.append(present)
    return outcome


def _anchor_of(join: State, graph: GraphTemplate | None) -> str | None:
    if graph is None:
        return None
    template = graph_shape(graph).by_id.get(join.identifier)
    if template is None or template.unites is None or template.unites.identifier not in join.parents:
        return None
    return template.unites.identifier


async def _collect(anchor: State, join_identifier: str, refs: set[OutputRef]) -> dict[OutputRef, list[Any]]:
    """For each `${{ x.outputs.f[*] }}` of a join: field f of every successful x below the anchor,
    in fan-out order (nested fan-outs by their index path). Failed and pruned branches are left
    out (a join under ALL_SUCCESS runs only when there are none).

    Raises:
        PlanningError: A successful state did not output the field.
    """
    collected: dict[OutputRef, list[Any]] = {}
    for identifier in {ref.identifier for ref in refs}:
        match = {"status": StateStatus.SUCCESS.value, "identifier": identifier}
        found = await queries.run_states_where(anchor.run_id, match)
        below = [doc for doc in found if (doc.get("parents") or {}).get(anchor.identifier) == str(anchor.id)]
        states = sorted(
            (State.model_validate(doc) for doc in below), key=lambda s: [*s.fanout_path, s.output_index]
        )
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
) -> State | None:
    """Insert the join (CANCELLED, with the reason, when it cannot run); None if it existed."""
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
    state = new_state(anchor, graph, join, inputs, parents, key)
    state.does_unites = True
    state.join_generation = anchor.join_generations.get(join.identifier, 0)
    state.owed_group, state.owed_index, state.owed_registration = join_group(key), 0, {"open": 1}
    try:
        check_size(ctx, state)
    except TooLarge as exc:
        # Too large to store with its inputs: created without them, CANCELLED, with the reason.
        error, state.inputs = exc.detail, {}
    if error is not None:
        # A join that cannot run is created CANCELLED with the reason; it keeps its inputs so
        # that an operator's manual retry can run it once the branches are fixed.
        state.status = StateStatus.CANCELLED
        state.error = error
        state.ended_ms = now_ms()
        state.pending_effect = Effect.JOINS
    if not await writes.insert_once(state):
        return None
    log.info("join_created", join=join.identifier, run_id=anchor.run_id, status=state.status.value)
    if error is None:
        ctx.work.notify(state.namespace_name)
    return state
