"""Forking a finished run (decision 0023): a new run that reuses what the original computed above
the nodes it is forked from, and runs those nodes and everything below them again.

The fork is written as one new run: the run document first (with what was asked, `fork`, and
`seeded: False`), then every reused copy and every fresh state that starts it in one bulk insert,
then the joins the fork makes itself, then `seeded: True`. Every id and spawn key is derived from
the new run's id and creation time, so the recovery pass finishes a fork a crash interrupted by
writing exactly the same documents again (`complete`).

Counted in the new run from the start: its reused copies settled (in their status), its fresh
states and the joins it makes open (group `f`, and each join's own group). A reused anchor of a
join is written with the fresh states below it counted there (services/join_tally.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from uuid import NAMESPACE_URL, uuid4, uuid5

import structlog
from beanie import PydanticObjectId
from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from state_manager import metrics
from state_manager.clock import now_ms
from state_manager.db import queries
from state_manager.db.documents import GraphTemplate, Run, State
from state_manager.domain import tally
from state_manager.domain.forks import ForkPlan, ForkRefused, Original, check_request, plan_fork
from state_manager.domain.graph import GraphShape
from state_manager.domain.planning import PlanningError, resolve_inputs
from state_manager.domain.status import FAILED, FINAL_RUN_STATUSES, RunStatus
from state_manager.errors import Conflict, DomainError, NotFound, Unprocessable
from state_manager.services import join_tally, run_status, writes
from state_manager.services.context import AppContext
from state_manager.services.graphs import graph_shape, template_at, template_for
from state_manager.services.joins import evaluate_fork_join, in_scope, join_group, join_key
from state_manager.services.new_states import check_size, give_gates, new_state

log = structlog.get_logger(__name__)

FRESH = "f"  # the tally group of the fresh states a fork writes itself


@dataclass(frozen=True)
class ForkRequest:
    starts: list[str]
    inputs: dict[str, dict[str, str]]
    store: dict[str, str]
    graph_version: str  # "original" or "current"
    key: str | None = None  # the Idempotency-Key of the bulk fork that made it

    def as_doc(self, at: int) -> dict[str, Any]:
        return {
            "at": at,
            "from": self.starts,
            "inputs": self.inputs,
            "store": self.store,
            "graph_version": self.graph_version,
            "key": self.key,
        }

    @classmethod
    def of_doc(cls, doc: dict[str, Any]) -> ForkRequest:
        version = doc.get("graph_version", "original")
        return cls(doc["from"], doc.get("inputs", {}), doc.get("store", {}), version, doc.get("key"))


@dataclass(frozen=True)
class Forked:
    run: Run
    reused: int  # states copied from the original


async def fork_run(
    ctx: AppContext, namespace: str, run_id: str, request: ForkRequest, new_run_id: str | None = None
) -> Forked:
    """Fork run `run_id` of `namespace` as asked; returns the new run. With `new_run_id` (a
    repeatable bulk fork), a fork already written under that id is answered instead.

    Raises:
        NotFound: No such run.
        Conflict: The run has not ended, or its graph version is no longer known.
        Unprocessable: The request names a node or input the graph does not have, or a node that
            would be reused did not succeed.
    """
    original = await queries.find_one(Run, {"run_id": run_id, "namespace_name": namespace})
    if original is None:
        raise NotFound(f"Run {run_id} not found in namespace {namespace}")
    if original.status not in FINAL_RUN_STATUSES or original.final is None:
        raise Conflict(f"Run {run_id} has not ended ({original.status}): fork it once it has ended")
    graph = await _graph(ctx, original, request.graph_version)
    run = Run(
        run_id=new_run_id or str(uuid4()),
        namespace_name=namespace,
        graph_name=original.graph_name,
        graph_version=graph.version,
        triggered_by="fork",
        store={**original.store, **request.store},
        seeded=False,
        created_ms=now_ms(),
        forked_from={"run_id": run_id, "from": request.starts},
        fork_of=run_id,
        fork=request.as_doc(now_ms()),
    )
    writes_ = await _plan_writes(ctx, graph, original, run, request)
    run.fork = {**(run.fork or {}), "reused": writes_.reused}
    run.created, run.open = writes_.created, writes_.open
    run.settled, run.owed = writes_.settled, writes_.owed
    run_status.set_keys(run)
    try:
        await queries.insert(run)
    except DuplicateKeyError:
        existing = await queries.find_one(Run, {"run_id": run.run_id})
        if existing is None or existing.fork_of != run_id:
            raise
        return Forked(existing, (existing.fork or {}).get("reused", 0))
    run_status.remember(run.run_id, run.id)
    metrics.run_triggered(run)
    await _write(ctx, graph, run, writes_)
    log.info(
        "run_forked",
        namespace=namespace,
        graph=run.graph_name,
        run_id=run.run_id,
        forked_from=run_id,
        starts=request.starts,
        reused=writes_.reused,
        fresh=len(writes_.fresh),
    )
    return Forked(run, writes_.reused)


@dataclass(frozen=True)
class FailedForks:
    forks: list[Forked]
    skipped: list[tuple[str, str]]  # (run id, why it could not be forked)


async def fork_failed(
    ctx: AppContext,
    namespace: str,
    graph_name: str,
    *,
    since_ms: int | None,
    until_ms: int | None,
    graph_version: str,
    limit: int,
    key: str | None,
) -> FailedForks:
    """Fork each FAILED run of the graph created in the window (oldest first, at most `limit`)
    from the nodes where it failed. With an `Idempotency-Key`, each fork's run id is derived
    from the key and the original run alone: a repeat (with any window: `--since 12h` a minute
    later is a repeat too) answers the same fork of each run and makes none twice (two at once
    too: the second insert of a run id fails); the forks made under the key, should they fail
    too, are not forked again under it."""
    since = run_status.key_bound(since_ms) if since_ms is not None else None
    before = run_status.key_bound(until_ms + 1) if until_ms is not None else None
    query = {
        "listing_key": run_status.listing_range(namespace, since, before),
        "graph_name": graph_name,
        "status": RunStatus.FAILED.value,
    }
    found = Run.get_motor_collection().find(query, {"run_id": 1, "sort_key": 1, "fork": 1})
    # Not the forks this key made (a fork that failed again is not forked again under it).
    candidates = [doc async for doc in found if key is None or (doc.get("fork") or {}).get("key") != key]
    originals = sorted(candidates, key=lambda doc: doc.get("sort_key", ""))[:limit]
    result = FailedForks([], [])
    for doc in originals:
        original = doc["run_id"]
        new_id = None if key is None else str(uuid5(NAMESPACE_URL, f"{namespace}|{key}|{original}"))
        request = ForkRequest(await failed_nodes(original), {}, {}, graph_version, key)
        try:
            result.forks.append(await fork_run(ctx, namespace, original, request, new_id))
        except DomainError as exc:  # this run cannot be forked: the others still are
            result.skipped.append((original, exc.detail))
    return result


async def failed_nodes(run_id: str) -> list[str]:
    """The nodes where a run failed (its states that failed and were not retried), in the order
    their first failed state was written."""
    failed = await queries.run_states_where(
        run_id, {"status": {"$in": [status.value for status in FAILED]}}, fields=("identifier",)
    )
    return list(dict.fromkeys(doc["identifier"] for doc in sorted(failed, key=lambda doc: doc["_id"])))


async def complete(ctx: AppContext, run: Run) -> None:
    """Finish writing a fork that a crash interrupted (the recovery pass): the same documents."""
    assert run.fork is not None and run.fork_of is not None
    original = await queries.find_one(Run, {"run_id": run.fork_of})
    graph = await template_at(ctx, run.namespace_name, run.graph_name, run.graph_version)
    if original is None or graph is None:
        raise RuntimeError(f"fork {run.run_id}: its original run or graph version is gone")
    await _write(ctx, graph, run, await _plan_writes(ctx, graph, original, run, ForkRequest.of_doc(run.fork)))


async def _graph(ctx: AppContext, original: Run, version: str) -> GraphTemplate:
    if version == "current":
        graph = await template_for(ctx, original.namespace_name, original.graph_name, 0)
        if graph is None:
            raise Conflict(
                f"Graph {original.graph_name} no longer exists: run {original.run_id} cannot be forked"
            )
        return graph
    graph = await template_at(ctx, original.namespace_name, original.graph_name, original.graph_version)
    if graph is None:
        raise Conflict(
            f"Version {original.graph_version} of graph {original.graph_name} (the one run {original.run_id} "
            'used) is no longer kept: fork it onto the current version ("graph_version": "current")'
        )
    return graph


@dataclass
class _Writes:
    """Everything a fork writes, derived from the new run's id and creation time."""

    states: list[State]  # reused copies, then the fresh states that start it
    fresh: list[State]
    joins: list[_ForkJoin]  # the joins the fork makes itself
    reused: int
    created: int
    open: int
    settled: dict[str, int]
    owed: dict[str, dict[str, int]]


def _oid(run: Run, index: int) -> ObjectId:
    """The id of the `index`-th state a fork writes: the fork's second (kept in `fork`), then
    the run, then the index, so the copies keep the original's order and a repeat writes the
    same ids."""
    assert run.fork is not None
    digest = hashlib.sha256(run.run_id.encode()).digest()
    return ObjectId((run.fork["at"] // 1000).to_bytes(4, "big") + digest[:4] + index.to_bytes(4, "big"))


async def _plan_writes(
    ctx: AppContext, graph: GraphTemplate, original: Run, run: Run, request: ForkRequest
) -> _Writes:
    shape = graph_shape(graph)
    try:
        check_request(shape, request.starts, request.inputs, graph.name)
        states = await queries.find_states({"run_id": original.run_id}, sort=[("_id", 1)])
        facts = [Original(str(s.id), s.identifier, s.status.value, s.parents) for s in states]
        plan = plan_fork(shape, facts, request.starts, original.run_id)
    except ForkRefused as exc:
        raise Unprocessable(str(exc)) from exc
    by_id = {str(s.id): s for s in states}
    ids = {state.id: str(_oid(run, index)) for index, state in enumerate(plan.reused)}
    copies = [_copy(by_id[state.id], run, ids, request) for state in plan.reused]
    copy_of = {str(copy.reused_from): copy for copy in copies}
    fresh = _fresh(ctx, shape, graph, plan, run, request, copy_of, len(copies))
    joins = [_ForkJoin(start.identifier, copy_of[str(start.parent_id)]) for start in plan.joins]
    _count_below_anchors(shape, copies, fresh, joins)
    settled: dict[str, int] = {}
    for copy in copies:
        settled[copy.status.value] = settled.get(copy.status.value, 0) + 1
    owed: dict[str, dict[str, int]] = {FRESH: tally.group_bits(len(fresh))}
    owed |= {join.group: tally.group_bits(1) for join in joins}
    opened = len(fresh) + len(joins)
    return _Writes(copies + fresh, fresh, joins, len(copies), len(copies) + opened, opened, settled, owed)


@dataclass(frozen=True)
class _ForkJoin:
    """A join the fork makes itself, above a reused anchor (nothing below it runs again)."""

    identifier: str
    anchor: State

    @property
    def group(self) -> str:
        generation = self.anchor.join_generations.get(self.identifier, 0)
        return join_group(join_key(str(self.anchor.id), self.identifier, generation))

    @property
    def parents(self) -> dict[str, str]:
        return {**self.anchor.parents, self.anchor.identifier: str(self.anchor.id)}


def _copy(state: State, run: Run, ids: dict[str, str], request: ForkRequest) -> State:
    """A reused state: as it ended, in the new run, under its new id and its new ancestors."""
    new_id = ids[str(state.id)]
    parents = {identifier: ids[parent] for identifier, parent in state.parents.items()}
    copy: State = state.model_copy(
        update={
            "id": PydanticObjectId(new_id),
            "revision_id": None,
            "run_id": run.run_id,
            "graph_version": run.graph_version,
            "parents": parents,
            "spawn_key": f"{run.run_id}:reuse:{state.id}",
            "reused_from": str(state.id),
            "input_overrides": request.inputs,
            "pinned_version": request.graph_version == "original",
            "pending_effect": None,
            "owed_group": "",  # written settled: counted when the run was written
            "owed_index": 0,
            "owed_registration": {},
            "spawned": [],
            "reopened_from": None,
            "run_cancelled": False,
            "cancel_sweep": None,
            "claim_token": None,
            "lease_expires_at": None,
            "join_tally": True,
            **join_tally.copy_fields(),  # counted below it: only fresh states (below)
        }
    )
    return copy


def _fresh(
    ctx: AppContext,
    shape: GraphShape,
    graph: GraphTemplate,
    plan: ForkPlan,
    run: Run,
    request: ForkRequest,
    copy_of: dict[str, State],
    first_index: int,
) -> list[State]:
    """The fresh states that start the fork, as their parents' reports would have made them
    (the root: as a trigger would), with the inputs given for them."""
    fresh: list[State] = []
    by_new_id = {str(copy.id): copy for copy in copy_of.values()}
    for start in plan.starts:
        template = shape.by_id[start.identifier]
        parent = copy_of[start.parent_id] if start.parent_id is not None else None
        outputs = {} if parent is None else _branch_outputs(parent, by_new_id)
        try:
            inputs = resolve_inputs(
                start.identifier, template.inputs, outputs, run.store, graph.store_config.default_values
            )
        except PlanningError as exc:
            raise Unprocessable(f"Node {start.identifier} cannot start the fork: {exc}") from exc
        if parent is None:
            origin = State(
                node_name=template.node_name,
                namespace_name=template.namespace,
                identifier=start.identifier,
                graph_name=graph.name,
                graph_namespace=run.namespace_name,
                run_id=run.run_id,
                spawn_key="",
                input_overrides=request.inputs,
                pinned_version=request.graph_version == "original",
            )
            parents: dict[str, str] = {}
            key = f"{run.run_id}:fork:{start.identifier}"
        else:
            origin, parents = parent, {**parent.parents, parent.identifier: str(parent.id)}
            key = f"{parent.id}:next:{start.identifier}"
        state = new_state(origin, graph, template, inputs, parents, key)
        try:
            give_gates(state, template, outputs, run.store, graph.store_config.default_values)
        except PlanningError as exc:
            raise Unprocessable(f"Node {start.identifier} cannot start the fork: {exc}") from exc
        check_size(ctx, state)  # refused (413) before anything of the fork is written
        if parent is None:
            state.fanout_path = []
        state.id = PydanticObjectId(_oid(run, first_index + len(fresh)))
        state.owed_group, state.owed_index = FRESH, len(fresh)
        state.owed_registration = {"open": len(plan.starts)}
        fresh.append(state)
    return fresh


def _branch_outputs(parent: State, by_new_id: dict[str, State]) -> dict[str, dict[str, Any]]:
    """The outputs of a reused state and of its ancestors (copies, all in hand)."""
    outputs = {parent.identifier: parent.outputs}
    for identifier, ancestor_id in parent.parents.items():
        if ancestor_id in by_new_id:
            outputs[identifier] = by_new_id[ancestor_id].outputs
    return outputs


def _count_below_anchors(
    shape: GraphShape, copies: list[State], fresh: list[State], joins: list[_ForkJoin]
) -> None:
    """Write each reused anchor with the fresh states (and the joins the fork makes) below it
    counted there: its joins wait for them."""
    for anchor in copies:
        siblings = shape.joins_on.get(anchor.identifier)
        if not siblings:
            continue
        below = [s.owed_index for s in fresh if in_scope(anchor, siblings, s.identifier, s.parents)]
        groups = [join.group for join in joins if in_scope(anchor, siblings, join.identifier, join.parents)]
        owed = {group: tally.group_bits(1) for group in groups}
        if below:
            owed[FRESH] = tally.bits_of(below)
        count = len(below) + len(groups)
        anchor.below_owed, anchor.below_open, anchor.below_created = owed, count, count


async def _write(ctx: AppContext, graph: GraphTemplate, run: Run, planned: _Writes) -> None:
    """The fork's states, then the joins it makes, then `seeded`; each write repeatable."""
    await writes.insert_many_once(planned.states)
    shape = graph_shape(graph)
    for join in planned.joins:
        await evaluate_fork_join(ctx, graph, shape.by_id[join.identifier], join.anchor)
    seeded = await Run.get_motor_collection().find_one_and_update(
        {"run_id": run.run_id}, {"$set": {"seeded": True}}, return_document=ReturnDocument.AFTER
    )
    for namespace in {state.namespace_name for state in planned.fresh}:
        ctx.work.notify(namespace)
    if seeded is not None:
        await run_status.conclude(seeded)  # a fork with nothing to run again ends at once
