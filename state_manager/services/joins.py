"""The joins stage: create a join once everything below its anchor has settled.

A join (`unites`) is re-evaluated whenever a state in its scope settles, so it fires or fails,
never hangs (decision 0004). The states below an anchor are counted on it (`join_tally.py`): each
one's joins stage counts it settled there, and the update that leaves nothing below the anchor
open makes the join; the scope is read only to make it (the collected outputs) or to name the
failed branches. An anchor written before these tallies were kept is decided the old way: one
probe of the run's states still going, then a read of the scope (`_evaluate_legacy`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog
from bson import ObjectId

from state_manager.clock import now_ms
from state_manager.db import queries
from state_manager.db.documents import GraphTemplate, Run, State
from state_manager.domain import tally
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
from state_manager.services import join_tally, run_status, writes
from state_manager.services.context import AppContext
from state_manager.services.graphs import graph_shape
from state_manager.services.join_tally import Anchor
from state_manager.services.new_states import (
    branch_outputs,
    check_size,
    fanout_copy_id,
    give_gates,
    new_state,
    template_texts,
)

log = structlog.get_logger(__name__)


def _anchors(state: State, status: StateStatus) -> list[tuple[str, str]]:
    """(identifier, state id) of the states whose joins a state in `status` may settle."""
    anchors = list(state.parents.items())
    if status == StateStatus.SUCCESS:
        anchors.append((state.identifier, str(state.id)))
    return anchors


def may_settle_a_join(state: State, status: StateStatus, graph: GraphTemplate | None) -> bool:
    if graph is None:
        return False
    shape = graph_shape(graph)
    return any(identifier in shape.joins_on for identifier, _ in _anchors(state, status))


@dataclass
class JoinsEvaluated:
    created: list[State] = field(default_factory=list)  # the joins this call created
    # Every join this evaluation found made (by this call or another): counted in the run with
    # the evaluating state's settlement (once: see domain/tally.py).
    present: list[State] = field(default_factory=list)

    def add(self, made: State | None, present: State | None) -> None:
        if made is not None:
            self.created.append(made)
        if present is not None and all(p.spawn_key != present.spawn_key for p in self.present):
            self.present.append(present)


async def evaluate_joins(ctx: AppContext, state: State, graph: GraphTemplate | None) -> JoinsEvaluated:
    """The joins stage of a settled state: the joins above it (and, for a fan-out with no next
    states, above each of its copies) that it may make, innermost first, then its count below
    each anchor above it, innermost first, with what it created there (its children, its retry,
    the joins it made or found): a join made here is counted below the anchors further up
    before they can be decided."""
    outcome = JoinsEvaluated()
    if graph is None:
        return outcome
    shape = graph_shape(graph)
    if state.status == StateStatus.SUCCESS and state.identifier in shape.joins_on:
        await _evaluate_own(ctx, graph, state, outcome)
    for anchor_identifier, anchor_id in reversed(list(state.parents.items())):
        joins = shape.joins_on.get(anchor_identifier, [])
        scope = _Scope(state.run_id, anchor_identifier, anchor_id, joins)
        if not joins or not scope.contains(_facts(state)):
            continue
        creations = _creations_in(scope, state, outcome.present)
        anchor = await join_tally.settle_in(ObjectId(anchor_id), state, creations)
        if anchor is None:
            continue
        if anchor.tallied and not anchor.ready:
            continue
        for join_identifier in joins:
            made, present = await _evaluate_join(
                ctx, graph, shape.by_id[join_identifier], anchor_identifier, anchor_id, joins, state.run_id
            )
            outcome.add(made, present)
    return outcome


async def _evaluate_own(ctx: AppContext, graph: GraphTemplate, state: State, outcome: JoinsEvaluated) -> None:
    """The joins on a state that succeeded: made now when nothing below it is open (it has no
    next states, or they all settled before it did); else the last of them makes them. Its
    fan-out copies are anchors too: each one's last child makes its joins, so only copies with
    no next states at all are decided here."""
    shape = graph_shape(graph)
    joins = shape.joins_on[state.identifier]
    anchors = [str(state.id)]
    template = shape.by_id.get(state.identifier)
    plain_next = [n for n in (template.next_nodes or []) if shape.by_id[n].unites is None] if template else []
    if not plain_next or not state.join_tally:
        anchors += [str(fanout_copy_id(state, index)) for index in range(1, len(state.fanout_outputs) + 1)]
    for anchor_id in anchors:
        if anchor_id == str(state.id) and state.join_tally and not Anchor.of_state(state).ready:
            continue  # the last state below it makes its joins
        for join_identifier in joins:
            made, present = await _evaluate_join(
                ctx, graph, shape.by_id[join_identifier], state.identifier, anchor_id, joins, state.run_id
            )
            outcome.add(made, present)


def _facts(state: State) -> dict[str, Any]:
    return {"identifier": state.identifier, "parents": state.parents}


def _creations_in(scope: _Scope, state: State, joins: list[State]) -> list[tally.Registration]:
    """What `state`'s settle created that is below the scope's anchor: everything it created
    (its children and its retry are where it is), but the joins it made or found only when they
    are below the anchor too."""
    entries = [*state.spawned, *(join_registration(join) for join in joins)]
    creations: list[tally.Registration] = []
    known = {state.owed_group}
    for entry in entries:
        is_join = "identifier" in entry or entry["group"].startswith("j")
        if entry["group"] in known or (is_join and not scope.contains(entry)):
            continue
        creations.append(tally.Registration(entry["group"], entry["open"], entry.get("settled", {})))
        known.add(entry["group"])
    return creations


async def _evaluate_join(
    ctx: AppContext,
    graph: GraphTemplate,
    join: NodeTemplate,
    anchor_identifier: str,
    anchor_id: str,
    sibling_joins: list[str],
    run_id: str,
) -> tuple[State | None, State | None]:
    """Decide the join above one anchor state: make it when the anchor succeeded and nothing
    below it is open. Returns it when this call created it, and the join if it is made (by
    this call or another)."""
    anchor = await queries.find_state(ObjectId(anchor_id))
    if anchor is None:
        return None, None
    if not anchor.join_tally:
        return await _evaluate_legacy(ctx, graph, join, anchor, sibling_joins)
    view = Anchor.of_state(anchor)
    if not view.ready:
        return None, None
    key = join_key(anchor_id, join.identifier, anchor.join_generations.get(join.identifier, 0))
    existing = await queries.find_one(State, {"spawn_key": key})
    if existing is not None:
        await _supersede_if_stale(existing, view, graph)
        return None, existing
    scope = _Scope(run_id, anchor_identifier, anchor_id, sibling_joins)
    failed = [StateStatus(s) for s, n in view.settled.items() if n and StateStatus(s) in FAILED]
    made = await _make(ctx, graph, join, anchor, scope, failed, key, view.reopens)
    if made is None:
        return None, await queries.find_one(State, {"spawn_key": key})
    after = await join_tally.read(ObjectId(anchor_id))
    if after is not None:
        await _supersede_if_stale(made, after, graph)
    return made, made


async def _supersede_if_stale(join: State, anchor: Anchor, graph: GraphTemplate) -> None:
    """A join made from a view of its anchor that a repair has since reopened (the repair's own
    supersede may have looked before the join was written): made again once the repair settles."""
    if anchor.reopens != join.join_epoch and join.status != StateStatus.RETRY_CREATED:
        await supersede(join, graph)


async def _make(
    ctx: AppContext,
    graph: GraphTemplate,
    join: NodeTemplate,
    anchor: State,
    scope: _Scope,
    failed: list[StateStatus],
    key: str,
    epoch: int,
) -> State | None:
    """Create the join (CANCELLED with the reason when its strategy refuses the failures below
    its anchor); None if it existed."""
    assert join.unites is not None
    error = None
    if join_verdict(join.unites.strategy, failed) == JoinVerdict.FAIL:
        failures = await _in_scope(scope, {"status": {"$in": [s.value for s in FAILED]}})
        names = sorted({doc["identifier"] for doc in failures})
        error = (
            f"Join {join.identifier} (unites {scope.anchor_identifier}, {join.unites.strategy}) cannot run: "
            f"states below {scope.anchor_identifier} failed: {', '.join(names)}"
        )
    return await _create_join(ctx, graph, join, anchor, key, error, epoch)


async def _evaluate_legacy(
    ctx: AppContext, graph: GraphTemplate, join: NodeTemplate, anchor: State, sibling_joins: list[str]
) -> tuple[State | None, State | None]:
    """An anchor written before anchors kept their tally (a run in flight across the upgrade):
    probe the run's states still going in its scope, and read the failures when none is."""
    assert join.unites is not None
    scope = _Scope(anchor.run_id, anchor.identifier, str(anchor.id), sibling_joins)
    if await _scope_going(scope) or anchor.status != StateStatus.SUCCESS:
        return None, None
    key = join_key(str(anchor.id), join.identifier, anchor.join_generations.get(join.identifier, 0))
    existing = await queries.find_one(State, {"spawn_key": key})
    if existing is not None:
        return None, existing
    failures = await _in_scope(scope, {"status": {"$in": [s.value for s in FAILED]}})
    failed = [StateStatus(doc["status"]) for doc in failures]
    made = await _make(ctx, graph, join, anchor, scope, failed, key, 0)
    if made is None:  # made by another writer just now
        return None, await queries.find_one(State, {"spawn_key": key})
    return made, made


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


def in_scope(anchor: State, sibling_joins: list[str], identifier: str, parents: dict[str, str]) -> bool:
    """Whether a state (its identifier and parents) is below `anchor` for the joins on it."""
    scope = _Scope(anchor.run_id, anchor.identifier, str(anchor.id), sibling_joins)
    return scope.contains({"identifier": identifier, "parents": parents})


async def evaluate_fork_join(
    ctx: AppContext, graph: GraphTemplate, join: NodeTemplate, anchor: State
) -> None:
    """Make a join that a fork makes itself, above a reused anchor (nothing below it runs
    again): as its anchor's last arrival would (counted in the run when the fork was written)."""
    sibling_joins = graph_shape(graph).joins_on.get(anchor.identifier, [])
    await _evaluate_join(ctx, graph, join, anchor.identifier, str(anchor.id), sibling_joins, anchor.run_id)


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
    anchor = await join_tally.read(ObjectId(scope.anchor_id))
    if anchor is not None and anchor.tallied:
        if anchor.open > 0:
            return None  # a branch is going (e.g. retried): the join is made when it settles
        if not any(n for s, n in anchor.settled.items() if StateStatus(s) in FAILED):
            return None
    elif await _scope_going(scope):
        return None
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
    """A join's entry in the `spawned` of the state that made or found it; with where the join
    is, so that it is counted only below the anchors whose scope holds it."""
    return {
        "group": join.owed_group or join_group(join.spawn_key),
        "open": 1,
        "settled": {},
        **_facts(join),
    }


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
            if join is not None and (made := await supersede(join, graph)) is not None:
                superseded.append(made)
    return superseded


async def supersede(join: State, graph: GraphTemplate | None) -> State | None:
    """Mark one generation of a join superseded (REJOIN); its "spawn" effect then makes the next
    one (`renew`). None if it cannot be (being settled, or superseded already)."""
    fields = {"rejoin": True, "lease_expires_at": None, **reopening(join)}
    expect = {"pending_effect": join.pending_effect}
    updated = await writes.transition(ObjectId(str(join.id)), Event.REJOIN, fields, extra_filter=expect)
    if updated is None:
        return None
    log.info("join_superseded", join=join.identifier, run_id=join.run_id, generation=join.join_generation)
    if updated.reopened_from is not None and join.pending_effect is None:
        await reopen_above(updated, graph)  # counted open again below the anchors above it
        await run_status.reopen_state(updated)  # and in its run: its run goes on
    return updated


async def reopen_above(state: State, graph: GraphTemplate | None) -> None:
    """Count a repaired state (`reopened_from` set) open again below each anchor above it whose
    joins wait for it; once. Written before anything of the repair, and again by its spawn
    stage (a crash in between)."""
    if graph is None or state.reopened_from is None:
        return
    shape = graph_shape(graph)
    for anchor_identifier, anchor_id in reversed(list(state.parents.items())):
        joins = shape.joins_on.get(anchor_identifier, [])
        if joins and _Scope(state.run_id, anchor_identifier, anchor_id, joins).contains(_facts(state)):
            await join_tally.reopen_in(ObjectId(anchor_id), state)


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
    made, present = await _evaluate_join(
        ctx, graph, shape.by_id[join.identifier], anchor_identifier, anchor_id, joins, join.run_id
    )
    outcome.add(made, present if present is None or present.id != join.id else None)
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
    ctx: AppContext,
    graph: GraphTemplate,
    join: NodeTemplate,
    anchor: State,
    key: str,
    error: str | None,
    epoch: int,
) -> State | None:
    """Insert the join (CANCELLED, with the reason, when it cannot run); None if it existed."""
    run = await queries.find_one(Run, {"run_id": anchor.run_id})
    outputs = await branch_outputs(anchor, referenced_identifiers(template_texts(join)))
    inputs: dict[str, str] = {}
    parents = {**anchor.parents, anchor.identifier: str(anchor.id)}
    state = new_state(anchor, graph, join, inputs, parents, key)
    try:
        collected = await _collect(anchor, join.identifier, collected_refs(join.inputs))
        store, defaults = (run.store if run else {}), graph.store_config.default_values
        inputs = resolve_inputs(join.identifier, join.inputs, outputs, store, defaults, collected)
        give_gates(state, join, outputs, store, defaults)
    except PlanningError as exc:
        error = error or str(exc)
    state.inputs = {**inputs, **anchor.input_overrides.get(join.identifier, {})}
    state.does_unites = True
    state.join_generation = anchor.join_generations.get(join.identifier, 0)
    state.join_epoch = epoch
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
