"""Runs and their states as the dashboard and the CLI read them, and the run-wide retry.

Listings are cursor-paged (runs newest first on their listing key, a run's states oldest first
on `_id`), so a page costs the same however deep it is and a fan-out of thousands is never one
response. Every count shown is stored on the run (decision 0020).
"""

from __future__ import annotations

import re
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId

from state_manager.clock import iso, now_ms
from state_manager.db import queries
from state_manager.db.documents import Run, State
from state_manager.domain.status import (
    FAILED,
    RETRIED,
    SUCCEEDED,
    RunStatus,
    StateStatus,
    node_status,
)
from state_manager.errors import BadRequest, Conflict, InvalidTransition, NotFound
from state_manager.schemas.runs import (
    GraphEdge,
    GraphNodeView,
    RetryFailedResult,
    RunDetail,
    RunGraphView,
    RunPage,
    RunSummary,
    StatePage,
    StateView,
)
from state_manager.schemas.states import state_item
from state_manager.services import run_status
from state_manager.services.context import AppContext
from state_manager.services.graphs import template_for
from state_manager.services.progress import settle_or_count
from state_manager.services.states import manual_retry, mark_retried, parse_state_id, retry_of

# Failed states an operator's "retry failed" retries (a cancelled state was stopped on purpose).
RETRYABLE = (StateStatus.ERRORED, StateStatus.TIMEDOUT, StateStatus.NEXT_CREATED_ERROR)
_RUN_CURSOR = re.compile(r"\d{13}:.{1,300}")


def _cursor(raw: str | None) -> ObjectId | None:
    if raw is None:
        return None
    try:
        return ObjectId(raw)
    except (InvalidId, TypeError) as exc:
        raise BadRequest(f"Invalid cursor {raw!r}: pass the next_cursor of the previous page") from exc


async def _run(namespace: str, run_id: str) -> Run:
    doc = await Run.get_motor_collection().find_one(
        {"run_id": run_id, "namespace_name": namespace}, {"owed": 0}
    )
    if doc is None:
        raise NotFound(f"Run {run_id} not found in namespace {namespace}")
    run: Run = Run.model_validate(doc)
    return run


OPEN = "OPEN"  # in a listing's counts: the states of a run still going, whatever their status


def _listed_counts(run: Run) -> dict[str, int]:
    """A run's counts as listings show them, from its stored figures alone: its settled states
    by status and, while it goes on, how many are still open."""
    counts = {status: n for status, n in run.settled.items() if n}
    if run.open > 0:
        counts[OPEN] = run.open
    return counts


async def _detailed_counts(run: Run) -> dict[str, int]:
    """One run's states by status: its settled ones from its stored figures, the ones still
    open counted now (only those: the page of a run still going)."""
    counts = {status: n for status, n in run.settled.items() if n}
    if run.open > 0:
        for status, n in (await queries.open_state_counts(run.run_id)).items():
            counts[status.value] = n
    return counts


def _summary_fields(run: Run, counts: dict[str, int]) -> dict[str, Any]:
    settled = run.settled

    def count(group: frozenset[StateStatus]) -> int:
        return sum(n for status, n in settled.items() if StateStatus(status) in group)

    return {
        "run_id": run.run_id,
        "namespace": run.namespace_name,
        "graph_name": run.graph_name,
        "graph_version": run.graph_version,
        "status": run.status,
        "triggered_by": run.triggered_by,
        "created_at": iso(run.created_at),
        "created_ms": run.created_ms,
        "started_ms": run.started_ms,
        "finished_ms": run.finished_ms,
        "duration_ms": max(0, (run.finished_ms or now_ms()) - run.created_ms),
        "counts": dict(sorted(counts.items())),
        "open_count": max(run.open, 0),
        "total_count": run.created,
        "success_count": count(SUCCEEDED),
        "pending_count": max(run.open, 0),
        "errored_count": count(FAILED),
        "retried_count": count(RETRIED),
        "cancelled_count": settled.get(StateStatus.CANCELLED.value, 0),
        "forked_from": run.forked_from,
        "priority": run.priority_ms // 1000,
    }


async def search_runs(
    namespace: str,
    *,
    graph: str | None = None,
    status: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    limit: int = 50,
    cursor: str | None = None,
    forked_from: str | None = None,
) -> RunPage:
    """Runs of a namespace, newest first, filtered by graph, stored status, creation time and
    the run they were forked from."""
    query: dict[str, Any] = {}
    if graph:
        query["graph_name"] = graph
    if forked_from:
        query["fork_of"] = forked_from
    if status:
        query["status"] = RunStatus(status).value
    since = run_status.key_bound(since_ms) if since_ms is not None else None
    before = run_status.key_bound(until_ms + 1) if until_ms is not None else None
    if cursor is not None:
        if not _RUN_CURSOR.fullmatch(cursor):
            raise BadRequest(f"Invalid cursor {cursor!r}: pass the next_cursor of the previous page")
        before = min(cursor, before) if before is not None else cursor
    query["listing_key"] = run_status.listing_range(namespace, since, before)
    found = (
        Run.get_motor_collection()
        .find(query, {"owed": 0, "seeds": 0})
        .sort("listing_key", -1)
        .limit(limit + 1)
    )
    runs = [Run.model_validate(doc) async for doc in found]
    more, runs = len(runs) > limit, runs[:limit]
    items = [RunSummary(**_summary_fields(run, _listed_counts(run))) for run in runs]
    return RunPage(namespace=namespace, runs=items, next_cursor=runs[-1].sort_key if more and runs else None)


async def run_detail(namespace: str, run_id: str) -> RunDetail:
    run = await _run(namespace, run_id)
    counts = await _detailed_counts(run)
    forks = Run.get_motor_collection().find({"fork_of": run_id}, {"run_id": 1})
    ordered = sorted([doc async for doc in forks], key=lambda doc: doc["_id"])  # in the order written
    return RunDetail(
        **_summary_fields(run, counts),
        store=run.store,
        cancelled_at=run.cancelled_at,
        forks=[doc["run_id"] for doc in ordered],
    )


def state_view(state: State) -> StateView:
    return StateView(
        **state_item(state),
        error_details=state.error_details,
        manual_retry_fanout_id=state.manual_retry_fanout_id,
        fanout_path=state.fanout_path,
        output_index=state.output_index,
        lease_expires_at=state.lease_expires_at,
        deadline_ms=state.deadline_ms,
        created_ms=int(state.created_at.timestamp() * 1000),
        updated_ms=state.updated_ms,
    )


async def state_page(
    namespace: str,
    run_id: str,
    *,
    status: str | None = None,
    identifier: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> StatePage:
    """A page of a run's states, oldest first."""
    await _run(namespace, run_id)
    query: dict[str, Any] = {"run_id": run_id, "graph_namespace": namespace}
    if status:
        query["status"] = StateStatus(status).value
    if identifier:
        query["identifier"] = identifier
    after = _cursor(cursor)
    if after is not None:
        query["_id"] = {"$gt": after}
    found = await queries.find_states(query, sort=[("_id", 1)], limit=limit + 1)
    more, found = len(found) > limit, found[:limit]
    return StatePage(
        run_id=run_id,
        states=[state_view(s) for s in found],
        next_cursor=str(found[-1].id) if more and found else None,
    )


async def find_state(namespace: str, state_id: ObjectId | str) -> State:
    """A state of a graph in `namespace`, by id (a malformed id is a 422)."""
    oid = state_id if isinstance(state_id, ObjectId) else parse_state_id(state_id)
    found = await queries.find_one(State, {"_id": oid, "graph_namespace": namespace})
    if found is None:
        raise NotFound(f"State {state_id} not found in namespace {namespace}")
    return found


async def template_graph(ctx: AppContext, namespace: str, run_id: str) -> RunGraphView:
    """The run's template DAG, each node with the counts of its states by status (a fan-out is
    one node with all its copies counted)."""
    run = await _run(namespace, run_id)
    graph = await template_for(ctx, namespace, run.graph_name, run.graph_version)
    per_node = await queries.identifier_tallies(run_id)
    nodes: list[GraphNodeView] = []
    known: set[str] = set()
    for node in graph.nodes if graph is not None else []:
        known.add(node.identifier)
        node_counts = per_node.get(node.identifier, {})
        nodes.append(
            GraphNodeView(
                identifier=node.identifier,
                node_name=node.node_name,
                namespace=node.namespace,
                status=node_status(node_counts),
                counts={s.value: n for s, n in sorted(node_counts.items()) if n},
                total=sum(node_counts.values()),
                next_nodes=list(node.next_nodes or []),
                unites=node.unites.identifier if node.unites else None,
            )
        )
    for identifier, node_counts in sorted(per_node.items()):  # states of nodes the template no longer has
        if identifier not in known:
            nodes.append(
                GraphNodeView(
                    identifier=identifier,
                    node_name=identifier,
                    namespace=namespace,
                    status=node_status(node_counts),
                    counts={s.value: n for s, n in sorted(node_counts.items()) if n},
                    total=sum(node_counts.values()),
                    next_nodes=[],
                    unites=None,
                )
            )
    present = {node.identifier for node in nodes}
    edges = [
        GraphEdge(source=node.identifier, target=target)
        for node in nodes
        for target in node.next_nodes
        if target in present
    ]
    return RunGraphView(
        run_id=run.run_id,
        graph_name=run.graph_name,
        graph_version=run.graph_version,
        status=run.status,
        nodes=nodes,
        edges=edges,
    )


async def retry_failed(ctx: AppContext, namespace: str, run_id: str) -> RetryFailedResult:
    """Repair a run: retry every failed state of the run once; each retried branch makes the
    joins above it again from the branches as they will be (their next generation, once the
    branches settle), and a failed join is made again the same way. Each retry is keyed by the
    failed state, so a repeated call (or two at once) retries nothing twice."""
    run = await _run(namespace, run_id)
    if run.cancelled_at is not None:
        raise Conflict(f"Run {run_id} was cancelled: its states cannot be retried")
    failed = await queries.find_states(
        {"run_id": run_id, "graph_namespace": namespace, "status": {"$in": [s.value for s in RETRYABLE]}},
        sort=[("_id", 1)],
    )
    created: list[str] = []
    # Every failed branch is marked retried before any is settled: while one still owes its
    # retry, the joins above wait, so each is made again once, from all the repaired branches.
    marked: list[tuple[State, str]] = []
    for state in (s for s in failed if not s.does_unites):
        key = f"retry-failed:{state.id}"
        try:
            marked.append((await mark_retried(ctx, state, key), key))
        except (Conflict, InvalidTransition):
            continue  # retried meanwhile by another call
    for retried, key in marked:
        await settle_or_count(ctx, retried)
        created.append(str((await retry_of(retried, key)).id))
    for join in (s for s in failed if s.does_unites):  # a join whose own node failed
        assert join.id is not None
        try:
            made = await manual_retry(ctx, join.namespace_name, ObjectId(str(join.id)), "")
        except (Conflict, InvalidTransition):
            continue
        created.append(str(made.id))
    detail = await run_detail(namespace, run_id)
    return RetryFailedResult(run_id=run_id, retried=len(created), state_ids=created, status=detail.status)
