"""Runs: triggering a graph (both eras), creating states in a run, and reading runs back."""

from __future__ import annotations

import contextlib
import hashlib
import json
from datetime import timedelta
from typing import Any
from uuid import uuid4

import structlog
from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from state_manager import metrics
from state_manager.clock import now_ms, utcnow
from state_manager.db import queries
from state_manager.db.documents import GraphTemplate, IdempotencyKey, Run, State
from state_manager.domain import tally as counting
from state_manager.domain.gates import node_gates
from state_manager.domain.gates import run_gate as gate_of_run
from state_manager.domain.graph import GraphShape
from state_manager.domain.planning import PlanningError, missing_store_keys, root_inputs
from state_manager.domain.status import RunStatus, StateStatus, tally, upstream_run_status
from state_manager.errors import BadRequest, Conflict, NotFound, Unprocessable
from state_manager.schemas.states import CreateStatesRequest, TriggerRequest, TriggerStateIn
from state_manager.services import run_status, writes
from state_manager.services.context import AppContext
from state_manager.services.graphs import VALID, find_graph, graph_shape
from state_manager.services.progress import cancel_waiting, cancelled_reason

log = structlog.get_logger(__name__)

CANCELLED = "CANCELLED"
_OPEN_RUN_STATUSES = [RunStatus.PENDING.value, RunStatus.RUNNING.value]


async def _valid_graph(ctx: AppContext, namespace: str, graph_name: str) -> GraphTemplate:
    """The graph as stored now (a trigger always reads it), which also refreshes the cache."""
    graph = await find_graph(namespace, graph_name)
    if graph is not None:
        ctx.templates.put(graph)
    if graph is None:
        raise NotFound(f"Graph template not found for namespace {namespace} and graph {graph_name}")
    if graph.validation_status != VALID:
        raise BadRequest(
            f"Graph template is not valid ({graph.validation_status}): "
            + ("; ".join(graph.validation_errors) or "validation has not finished")
        )
    return graph


def _seed(shape: GraphShape, identifier: str, inputs: dict[str, str], enqueue_after: int) -> dict[str, Any]:
    node = shape.by_id.get(identifier)
    if node is None:
        raise NotFound(f"Node template not found: {identifier} is not a node of this graph")
    return {
        "identifier": identifier,
        "node_name": node.node_name,
        "namespace_name": node.namespace,
        "inputs": inputs,
        "enqueue_after": enqueue_after,
        "timeout_ms": node.timeout_seconds * 1000 if node.timeout_seconds else None,
    }


def _seeds_from_states(shape: GraphShape, states: list[TriggerStateIn], when: int) -> list[dict[str, Any]]:
    return [_seed(shape, item.identifier, item.inputs, when) for item in states]


def _root_seed(graph: GraphTemplate, shape: GraphShape, body: TriggerRequest, when: int) -> dict[str, Any]:
    # The template's own root inputs reference only the store (checked at upsert); an output
    # reference in a given input fails to resolve below, with a message naming it.
    root = shape.by_id[shape.root]
    defaults = graph.store_config.default_values
    try:
        inputs = root_inputs(shape.root, root.inputs, body.inputs, body.store, defaults)
    except PlanningError as exc:
        raise BadRequest(f"Invalid input: {exc}") from exc
    return _seed(shape, shape.root, inputs, when)


def _gate_seeds(
    graph: GraphTemplate,
    shape: GraphShape,
    seeds: list[dict[str, Any]],
    store: dict[str, str],
    run_gate: str | None,
) -> None:
    """Give each root state its node's flow-control gates (keys from the store), and the run's
    gate of its graph's run concurrency: a run waits for a slot before its first claim."""
    for seed in seeds:
        node = shape.by_id[seed["identifier"]]
        try:
            found = node_gates(
                graph.namespace, graph.name, node, {}, store, graph.store_config.default_values
            )
        except PlanningError as exc:
            raise BadRequest(f"Invalid input: {exc}") from exc
        seed["gates"] = found + ([run_gate] if run_gate else [])


async def trigger_graph(
    ctx: AppContext,
    namespace: str,
    graph_name: str,
    body: TriggerRequest,
    run_id: str | None = None,
    triggered_by: str = "api",
) -> tuple[Run, list[State]]:
    """Start a run: SEED form seeds the given identifiers, HEAD form starts the root."""
    graph = await _valid_graph(ctx, namespace, graph_name)
    shape = graph_shape(graph)
    when = now_ms() + body.start_delay
    # Checked first, in both forms: the message names every missing key.
    missing = missing_store_keys(graph.store_config.required_keys, body.store)
    if missing:
        raise BadRequest(f"Missing store keys: {missing}")
    if body.states is not None:
        seeds = _seeds_from_states(shape, body.states, when)
    else:
        seeds = [_root_seed(graph, shape, body, when)]
    defaults = graph.store_config.default_values
    try:
        run_gate = gate_of_run(namespace, graph_name, graph.concurrency, body.store, defaults)
    except PlanningError as exc:
        raise BadRequest(f"Invalid run concurrency key of graph {graph_name}: {exc}") from exc
    _gate_seeds(graph, shape, seeds, body.store, run_gate)
    run = Run(
        run_id=run_id or str(uuid4()),
        namespace_name=namespace,
        graph_name=graph_name,
        graph_version=graph.version,
        triggered_by=triggered_by,
        store=body.store,
        seeds=seeds,
        created_ms=when - body.start_delay,
        priority_ms=body.priority * 1000,
        run_gate=run_gate,
        # Its root states are counted open from the start (they are written next).
        created=len(seeds),
        open=len(seeds),
        owed={run_status.SEEDS: counting.group_bits(len(seeds))},
    )
    run_status.set_keys(run)
    try:
        await queries.insert(run)
    except DuplicateKeyError as exc:
        raise Conflict(f"Run {run.run_id} already exists") from exc
    run_status.remember(run.run_id, run.id)
    states = await seed_run(ctx, run)
    metrics.run_triggered(run)
    log.info("run_triggered", namespace=namespace, graph=graph_name, run_id=run.run_id, states=len(states))
    return run, states


async def trigger_once(
    ctx: AppContext, namespace: str, graph_name: str, body: TriggerRequest, key: str
) -> tuple[Run, list[State]]:
    """A trigger with an `Idempotency-Key`: the first request with the key starts the run; a repeat
    with the same body (also a concurrent one) answers with that run and starts nothing; the same
    key with another body is refused.

    The key is recorded first, with the run id it will use, so a repeat after a crash in between
    still starts exactly that run.
    """
    body_hash = hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()
    record = await _key_record(ctx, namespace, graph_name, key, body_hash)
    if record.body_hash != body_hash:
        raise Unprocessable(
            f"Idempotency-Key {key!r} was already used with a different request body for graph "
            f"{graph_name}: use a new key for a different trigger"
        )
    try:
        return await trigger_graph(ctx, namespace, graph_name, body, run_id=record.run_id)
    except Conflict:
        run = await queries.find_one(Run, {"run_id": record.run_id})
        if run is None:
            raise
        return run, await seed_run(ctx, run)


async def _key_record(
    ctx: AppContext, namespace: str, graph_name: str, key: str, body_hash: str
) -> IdempotencyKey:
    """The key's record: a new one, or the one a live earlier request left (an expired one that
    the TTL monitor has not removed yet is replaced)."""
    now = utcnow()
    fresh = IdempotencyKey(
        namespace=namespace,
        graph_name=graph_name,
        key=key,
        body_hash=body_hash,
        run_id=str(uuid4()),
        created_at=now,
        expires_at=now + timedelta(seconds=ctx.settings.idempotency_key_seconds),
    )
    where = {"namespace": namespace, "graph_name": graph_name, "key": key}
    for _ in range(3):
        with contextlib.suppress(DuplicateKeyError):
            await queries.insert(fresh)
            return fresh
        existing = await queries.find_one(IdempotencyKey, where)
        if existing is None:
            continue  # removed by the TTL monitor just now
        if existing.expires_at > now:
            return existing
        await IdempotencyKey.get_motor_collection().delete_one(
            {"_id": existing.id, "expires_at": existing.expires_at}
        )
    raise Conflict(f"Idempotency-Key {key!r} is being changed by concurrent requests; try again")


async def seed_run(ctx: AppContext, run: Run) -> list[State]:
    """Create the run's root states (idempotent: the recovery loop may repeat it)."""
    keys = [f"{run.run_id}:seed:{index}" for index in range(len(run.seeds))]
    states = [
        _seed_state(run, seed, key, run_status.SEEDS, index, len(run.seeds))
        for index, (key, seed) in enumerate(zip(keys, run.seeds, strict=True))
    ]
    await writes.insert_many_once(states)
    seeded = await Run.get_motor_collection().find_one_and_update(
        {"run_id": run.run_id}, {"$set": {"seeded": True}}, return_document=ReturnDocument.AFTER
    )
    if seeded is not None and seeded.get("cancelled_at") is not None:  # cancelled while seeding
        await cancel_waiting(ctx, {"spawn_key": {"$in": keys}}, cancelled_reason(run.run_id))
    for namespace in {seed["namespace_name"] for seed in run.seeds}:
        ctx.work.notify(namespace)
    if all(state.id is not None for state in states):
        return states  # all written by this call: no need to read them back
    by_key = {s.spawn_key: s for s in await queries.find_states({"spawn_key": {"$in": keys}})}
    return [by_key[key] for key in keys if key in by_key]


def _seed_state(run: Run, seed: dict[str, Any], key: str, group: str, index: int, size: int) -> State:
    return State(
        join_tally=True,
        owed_group=group,
        owed_index=index,
        owed_registration={"open": size},
        node_name=seed["node_name"],
        namespace_name=seed["namespace_name"],
        identifier=seed["identifier"],
        graph_name=run.graph_name,
        graph_namespace=run.namespace_name,
        graph_version=run.graph_version,
        run_id=run.run_id,
        inputs=seed["inputs"],
        spawn_key=key,
        enqueue_after=seed["enqueue_after"],
        priority_ms=run.priority_ms,
        timeout_ms=seed.get("timeout_ms"),
        fanout_id=str(uuid4()),
        gates=seed.get("gates") or [],
    )


async def create_states(
    ctx: AppContext, namespace: str, graph_name: str, body: CreateStatesRequest
) -> list[State]:
    """SEED `states/create`: add states to a caller-chosen run (created on first use)."""
    graph = await _valid_graph(ctx, namespace, graph_name)
    shape = graph_shape(graph)
    seeds = _seeds_from_states(shape, body.states, now_ms())
    _gate_seeds(graph, shape, seeds, {}, None)  # a run made by states/create has no run slot
    existing = await queries.find_one(Run, {"run_id": body.run_id})
    if existing is not None and (existing.namespace_name, existing.graph_name) != (namespace, graph_name):
        raise Conflict(
            f"Run {body.run_id} belongs to graph {existing.graph_name} in {existing.namespace_name}"
        )
    if existing is not None and existing.cancelled_at is not None:
        raise Conflict(f"Run {body.run_id} was cancelled: no states can be added to it", "RUN_CANCELLED")
    run = existing or Run(
        run_id=body.run_id,
        namespace_name=namespace,
        graph_name=graph_name,
        graph_version=graph.version,
        seeded=True,
        created_ms=now_ms(),
    )
    run_status.set_keys(run)
    if existing is None:
        with contextlib.suppress(DuplicateKeyError):
            await queries.insert(run)
            metrics.run_triggered(run)
    batch = uuid4().hex
    group = f"n{batch}"
    states = [
        _seed_state(run, seed, f"{run.run_id}:create:{batch}:{i}", group, i, len(seeds))
        for i, seed in enumerate(seeds)
    ]
    await writes.insert_many_once(states)
    # Counted after they are written (a run that had ended is reopened by it). A crash in
    # between leaves them uncounted until the first of them settles: it counts its batch then.
    await run_status.register(run.run_id, counting.Registration(group, len(states)))
    now = await queries.find_one(Run, {"run_id": run.run_id})
    if now is not None and now.cancelled_at is not None:  # cancelled while they were written
        keys = [state.spawn_key for state in states]
        await cancel_waiting(ctx, {"spawn_key": {"$in": keys}}, cancelled_reason(run.run_id))
        raise Conflict(f"Run {body.run_id} was cancelled: no states can be added to it", "RUN_CANCELLED")
    for namespace_name in {state.namespace_name for state in states}:
        ctx.work.notify(namespace_name)
    return states


async def list_runs(namespace: str, page: int, size: int) -> tuple[int, list[dict[str, Any]]]:
    """A page of runs, newest first, with their counts and status as upstream shows them.

    The status is the stored one (a running run shows as PENDING, as upstream has no RUNNING);
    a finished run's counts are stored on it, a run still going is counted now.
    """
    total = await Run.find({"namespace_name": namespace}).count()
    found = (
        Run.get_motor_collection()
        .find({"listing_key": run_status.listing_range(namespace)}, {"owed": 0, "seeds": 0})
        .sort("listing_key", -1)
        .skip((page - 1) * size)
        .limit(size)
    )
    runs = [Run.model_validate(doc) async for doc in found]
    items = []
    for run in runs:
        # From its stored figures: the states still open count as pending.
        counts = run.final or tally(
            {**{StateStatus(s): n for s, n in run.settled.items()}, StateStatus.CREATED: max(run.open, 0)}
        )
        counts = {**counts, "status": upstream_run_status(run.status)}
        items.append(
            {"run_id": run.run_id, "graph_name": run.graph_name, **counts, "created_at": run.created_at}
        )
    return total, items


async def cancel_run(ctx: AppContext, namespace: str, run_id: str) -> Run:
    """Cancel every waiting state of a run, and anything a settle in flight writes after.

    First the run is marked (so its listing says CANCELLED and a repeat answers the same), then
    every state of the run is flagged, then every CREATED or QUEUED one is cancelled. A settle
    that writes after the sweep sees the flag in its closing write and cancels what it wrote
    (`progress._undo_if_cancelled`); the recovery pass goes through the same code. The run's
    counts are stored when its last state has settled.
    """
    run = await queries.find_one(Run, {"run_id": run_id, "namespace_name": namespace})
    if run is None:
        raise NotFound(f"Run {run_id} not found in namespace {namespace}")
    if run.cancelled_at is None:
        # Conditional on the run not having ended: a cancel that loses the race to the run's
        # end (its last report stored SUCCESS or FAILED meanwhile) changes nothing.
        now = now_ms()
        result = await Run.get_motor_collection().update_one(
            {"run_id": run_id, "cancelled_at": None, "final": None, "status": {"$in": _OPEN_RUN_STATUSES}},
            {"$set": {"cancelled_at": now, "status": CANCELLED, "finished_ms": now}, "$inc": {"revision": 1}},
        )
        if not result.matched_count:
            ended = await queries.find_one(Run, {"run_id": run_id})
            if ended is not None and ended.cancelled_at is None:
                raise Conflict(f"Run {run_id} has already ended: it is {ended.status}; nothing was cancelled")
    await queries.mark_run_cancelled(run_id)
    cancelled = await cancel_waiting(ctx, {"run_id": run_id}, cancelled_reason(run_id))
    doc = await Run.get_motor_collection().find_one_and_update(
        {"run_id": run_id}, {"$inc": {"cancelled_count": cancelled}}, return_document=ReturnDocument.AFTER
    )
    log.info("run_cancelled", namespace=namespace, run_id=run_id, cancelled=cancelled)
    await run_status.conclude_run(run_id)  # a run with nothing open ends at once
    cancelled_run: Run = Run.model_validate(doc)
    return cancelled_run


async def run_states(namespace: str, run_id: str) -> list[State]:
    return await queries.find_states({"run_id": run_id, "graph_namespace": namespace}, sort=[("_id", 1)])


async def namespace_states(namespace: str) -> list[State]:
    return await queries.find_states({"graph_namespace": namespace}, sort=[("_id", 1)])


async def node_details(namespace: str, graph_name: str, run_id: str, node_id: str) -> State:
    try:
        oid = ObjectId(node_id)
    except (InvalidId, TypeError) as exc:
        raise BadRequest(f"Invalid node ID format: {node_id}") from exc
    query = {"_id": oid, "run_id": run_id, "graph_name": graph_name, "graph_namespace": namespace}
    found = await queries.find_one(State, query)
    if found is None:
        raise NotFound(f"Node {node_id} not found in run {run_id} for graph {graph_name}")
    return found
