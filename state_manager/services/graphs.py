"""Graph templates: upsert with synchronous validation, read, list, re-validate on registration.

Validation runs inside the request (no background task a crash could lose): structural problems
are a 400 at once; the checks that need registered nodes set `validation_status`. Registering
nodes re-validates the graphs that use them, so a graph upserted before its runtime started
becomes VALID when the runtime registers.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import structlog
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from state_manager.clock import utcnow
from state_manager.db import queries
from state_manager.db.documents import (
    CronSchedule,
    FlowGate,
    GraphTemplate,
    GraphVersion,
    RegisteredNode,
    State,
)
from state_manager.domain.cron import next_fire_after
from state_manager.domain.gates import NEVER
from state_manager.domain.graph import (
    GraphShape,
    GraphStructureError,
    check_registered,
    concurrency_errors,
    validate_structure,
)
from state_manager.domain.models import NodeTemplate, RegisteredNodeInfo, StoreConfig
from state_manager.errors import InvalidGraph, NotFound
from state_manager.schemas.graphs import UpsertGraphRequest
from state_manager.services.context import AppContext

log = structlog.get_logger(__name__)

VALID = "VALID"
INVALID = "INVALID"


_SHAPES: dict[tuple[str, int], GraphShape] = {}
_SHAPE_CACHE_SIZE = 256


def graph_shape(graph: GraphTemplate) -> GraphShape:
    """The analysed shape of a stored graph (it passed these checks when it was stored).

    Cached per (graph id, version): every upsert bumps the version, so an entry never goes stale,
    and reports on the hot path do not re-analyse the template.
    """
    key = (str(graph.id), graph.version)
    shape = _SHAPES.get(key)
    if shape is None:
        if len(_SHAPES) >= _SHAPE_CACHE_SIZE:
            _SHAPES.pop(next(iter(_SHAPES)))
        shape = _SHAPES[key] = _shape(graph.nodes, graph.store_config)
    return shape


def _shape(nodes: list[NodeTemplate], store_config: StoreConfig) -> GraphShape:
    try:
        return validate_structure(nodes, store_config)
    except GraphStructureError as exc:
        raise InvalidGraph(exc.errors) from exc


def _checked_shape(
    body: UpsertGraphRequest, nodes: list[NodeTemplate], store_config: StoreConfig
) -> GraphShape:
    """The shape of an upsert's graph, its graph-level settings checked with it (400)."""
    limit_errors: list[str] = []
    if body.concurrency is not None:
        store_keys = set(store_config.required_keys) | set(store_config.default_values)
        limit_errors = concurrency_errors(body.concurrency, "the graph", store_keys, None)
    try:
        shape = validate_structure(nodes, store_config)
    except GraphStructureError as exc:
        raise InvalidGraph(exc.errors + limit_errors) from exc
    if limit_errors:
        raise InvalidGraph(limit_errors)
    return shape


async def _registered_check(
    graph_nodes: list[NodeTemplate], shape: GraphShape, secrets: set[str]
) -> list[str]:
    pairs = {(node.node_name, node.namespace) for node in graph_nodes}
    found = RegisteredNode.find({"$or": [{"name": n, "namespace": ns} for n, ns in pairs]})
    registered = {
        (doc.name, doc.namespace): RegisteredNodeInfo.model_validate(doc.model_dump()) async for doc in found
    }
    return check_registered(graph_nodes, shape, registered, secrets)


@dataclass(frozen=True)
class Upserted:
    """What an upsert left: the graph as stored, and whether the upsert is its live version (an
    upsert that did not validate while a valid version was live waits as `graph.candidate`)."""

    graph: GraphTemplate
    live: bool = True


async def check_graph(body: UpsertGraphRequest) -> list[str]:
    """What an upsert of `body` would be told, without storing anything: 400 for a structural
    mistake, else the reasons it would not validate (none: VALID)."""
    nodes = [node.to_domain() for node in body.nodes]
    store_config = StoreConfig.model_validate(body.store_config.model_dump())
    return await _registered_check(nodes, _checked_shape(body, nodes, store_config), set(body.secrets))


async def upsert_graph(ctx: AppContext, namespace: str, name: str, body: UpsertGraphRequest) -> Upserted:
    """Store a new version of the graph. One that does not validate never replaces a valid live
    version (a typo must not stop every trigger): it is kept as the graph's candidate instead."""
    nodes = [node.to_domain() for node in body.nodes]
    store_config = StoreConfig.model_validate(body.store_config.model_dump())
    shape = _checked_shape(body, nodes, store_config)
    errors = await _registered_check(nodes, shape, set(body.secrets))
    now = utcnow()
    fields: dict[str, Any] = {
        "nodes": [node.model_dump(mode="json") for node in nodes],
        "secrets": {key: ctx.cipher.encrypt(value) for key, value in body.secrets.items()},
        "retry_policy": body.retry_policy.model_dump(mode="json"),
        "store_config": store_config.model_dump(mode="json"),
        "triggers": [trigger.model_dump(mode="json") for trigger in body.triggers],
        "concurrency": body.concurrency.model_dump(mode="json") if body.concurrency else None,
        "validation_status": INVALID if errors else VALID,
        "validation_errors": errors,
        "updated_at": now,
    }
    if errors and (kept := await _keep_live(namespace, name, fields)) is not None:
        log.info("graph_upsert_kept_live", namespace=namespace, graph=name, errors=errors)
        return Upserted(kept, live=False)
    doc = await GraphTemplate.get_motor_collection().find_one_and_update(
        {"name": name, "namespace": namespace},
        {
            "$set": fields,
            "$unset": {"candidate": ""},
            "$inc": {"version": 1},
            "$setOnInsert": {"created_at": now},
        },
        upsert=True,
        return_document=ReturnDocument.AFTER,
    )
    graph: GraphTemplate = GraphTemplate.model_validate(doc)
    ctx.templates.put(graph)
    await keep_version(graph)
    await sync_schedules(graph)
    await _wake_gates(graph)
    log.info("graph_upserted", namespace=namespace, graph=name, status=graph.validation_status)
    return Upserted(graph)


async def _wake_gates(graph: GraphTemplate) -> None:
    """A new version may have raised or taken off a limit: the graph's gates where states wait
    are looked at on the next claim (services/gates.py), not only when a slot frees."""
    await FlowGate.get_motor_collection().update_many(
        {"namespace": graph.namespace, "graph": graph.name, "wake_ms": {"$lt": NEVER}},
        {"$set": {"wake_ms": 0}},
    )


async def _keep_live(namespace: str, name: str, fields: dict[str, Any]) -> GraphTemplate | None:
    """Store `fields` as the candidate of a graph whose live version is valid; None when there
    is no such graph (a new one, or one that is not valid either: the upsert replaces it)."""
    doc = await GraphTemplate.get_motor_collection().find_one_and_update(
        {"name": name, "namespace": namespace, "validation_status": VALID},
        {"$set": {"candidate": fields}},
        return_document=ReturnDocument.AFTER,
    )
    return None if doc is None else GraphTemplate.model_validate(doc)


async def get_graph(namespace: str, name: str) -> GraphTemplate:
    graph = await find_graph(namespace, name)
    if graph is None:
        raise NotFound(f"Graph template {name} not found in namespace {namespace}")
    return graph


async def find_graph(namespace: str, name: str) -> GraphTemplate | None:
    return await queries.find_one(GraphTemplate, {"name": name, "namespace": namespace})


async def template_for(ctx: AppContext, namespace: str, name: str, version: int) -> GraphTemplate | None:
    """The template at `version` or newer: from this process's cache when it has one, else read."""
    cached: GraphTemplate | None = ctx.templates.get(namespace, name, version)
    if cached is not None:
        return cached
    graph = await find_graph(namespace, name)
    if graph is not None:
        ctx.templates.put(graph)
    return graph


async def keep_version(graph: GraphTemplate) -> None:
    """Keep what this version of the graph is, for forks onto it later (once per version)."""
    kept = GraphVersion(
        namespace=graph.namespace,
        name=graph.name,
        version=graph.version,
        nodes=graph.nodes,
        retry_policy=graph.retry_policy,
        store_config=graph.store_config,
    )
    with contextlib.suppress(DuplicateKeyError):
        await queries.insert(kept)


_KEPT_VERSIONS: dict[tuple[str, int], GraphVersion] = {}  # (graph id, version): never changes


async def template_at(ctx: AppContext, namespace: str, name: str, version: int) -> GraphTemplate | None:
    """The graph as it was at `version` (the live one when that is its version); None when the
    graph is gone or that version was not kept (written before versions were kept)."""
    live = await template_for(ctx, namespace, name, version)
    if live is None or live.version == version:
        return live
    key = (str(live.id), version)
    kept = _KEPT_VERSIONS.get(key)
    if kept is None:
        where = {"namespace": namespace, "name": name, "version": version}
        kept = await queries.find_one(GraphVersion, where)
        if kept is None:
            return None
        if len(_KEPT_VERSIONS) >= _SHAPE_CACHE_SIZE:
            _KEPT_VERSIONS.pop(next(iter(_KEPT_VERSIONS)))
        _KEPT_VERSIONS[key] = kept
    old: GraphTemplate = live.model_copy(
        update={
            "version": version,
            "nodes": kept.nodes,
            "retry_policy": kept.retry_policy,
            "store_config": kept.store_config,
        }
    )
    return old


async def graph_of(ctx: AppContext, state: State) -> GraphTemplate | None:
    """The graph a state's effects follow: the newest version (a run in flight follows an
    upsert), or, in a run forked onto the version its original ran, that version."""
    if state.pinned_version:
        return await template_at(ctx, state.graph_namespace, state.graph_name, state.graph_version)
    return await template_for(ctx, state.graph_namespace, state.graph_name, state.graph_version)


async def list_graphs(namespace: str) -> list[GraphTemplate]:
    return await GraphTemplate.find({"namespace": namespace}).sort("name").to_list()


async def revalidate_graphs_using(namespace: str, node_names: list[str]) -> None:
    """Re-run the registered-node checks of every graph that uses one of these nodes, live or
    in its candidate; a candidate that now validates goes live."""
    # One equality $elemMatch per node: the embedded engine does not match `$in` inside one.
    uses = [
        {path: {"$elemMatch": {"namespace": namespace, "node_name": name}}}
        for name in node_names
        for path in ("nodes", "candidate.nodes")
    ]
    if not uses:
        return
    async for graph in GraphTemplate.find({"$or": uses}):
        await _revalidate_live(graph)
        if graph.candidate is not None:
            await _promote_if_valid(graph)


async def _revalidate_live(graph: GraphTemplate) -> None:
    errors = await _registered_check(graph.nodes, graph_shape(graph), set(graph.secrets))
    status = INVALID if errors else VALID
    if status == graph.validation_status and errors == graph.validation_errors:
        return
    # Conditional on the version: a concurrent upsert's own (newer) verdict wins.
    result = await GraphTemplate.get_motor_collection().update_one(
        {"_id": graph.id, "version": graph.version},
        {"$set": {"validation_status": status, "validation_errors": errors, "updated_at": utcnow()}},
    )
    if result.matched_count:
        await sync_schedules(graph.model_copy(update={"validation_status": status}))
    log.info("graph_revalidated", namespace=graph.namespace, graph=graph.name, status=status)


async def _promote_if_valid(graph: GraphTemplate) -> None:
    """Make the graph's candidate its live version once it validates (its nodes registered)."""
    candidate = graph.candidate or {}
    nodes = [NodeTemplate.model_validate(node) for node in candidate.get("nodes", [])]
    store_config = StoreConfig.model_validate(candidate.get("store_config", {}))
    try:
        errors = await _registered_check(
            nodes, _shape(nodes, store_config), set(candidate.get("secrets", {}))
        )
    except InvalidGraph:  # cannot happen (it passed the structural checks): it waits
        return
    if errors:
        return
    promoted = {**candidate, "validation_status": VALID, "validation_errors": [], "updated_at": utcnow()}
    # Conditional on the candidate being this one: a newer upsert meanwhile wins.
    doc = await GraphTemplate.get_motor_collection().find_one_and_update(
        {"_id": graph.id, "candidate.updated_at": candidate.get("updated_at")},
        {"$set": promoted, "$unset": {"candidate": ""}, "$inc": {"version": 1}},
        return_document=ReturnDocument.AFTER,
    )
    if doc is not None:
        live = GraphTemplate.model_validate(doc)
        await keep_version(live)
        await sync_schedules(live)
        log.info("graph_candidate_live", namespace=graph.namespace, graph=graph.name)


async def sync_schedules(graph: GraphTemplate) -> None:
    """Make the graph's cron schedules match its triggers; kept schedules keep their next time.

    Only a VALID graph is scheduled: an INVALID one could never start a run.
    """
    expressions: list[str] = []
    if graph.validation_status == VALID:
        expressions = sorted({trigger["value"]["expression"] for trigger in graph.triggers})
    await CronSchedule.get_motor_collection().delete_many(
        {"namespace": graph.namespace, "graph_name": graph.name, "expression": {"$nin": expressions}}
    )
    for expression in expressions:
        first = next_fire_after(expression, utcnow())
        schedule = CronSchedule(
            namespace=graph.namespace,
            graph_name=graph.name,
            expression=expression,
            next_fire_ms=int(first.timestamp() * 1000),
        )
        with contextlib.suppress(DuplicateKeyError):
            await schedule.insert()
