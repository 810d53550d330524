"""Diff two runs of one graph: read both runs' states (only the fields compared) and the graph's
node order, and let `domain/run_diff.py` compare them."""

from __future__ import annotations

from typing import Any

from state_manager.db import queries
from state_manager.db.documents import Run
from state_manager.domain import run_diff as domain
from state_manager.errors import NotFound, Unprocessable
from state_manager.schemas.diffs import DiffSide, DiffSummary, FieldDiff, NodeDiff, RunDiff
from state_manager.services.context import AppContext
from state_manager.services.graphs import template_for

# The state fields the diff reads (the rest of a state, its tallies above all, is left in the store).
DIFF_FIELDS = (
    "_id",
    "identifier",
    "status",
    "inputs",
    "outputs",
    "fanout_path",
    "output_index",
    "retry_count",
    "join_generation",
)


async def _run(namespace: str, run_id: str) -> dict[str, Any]:
    found: dict[str, Any] | None = await Run.get_motor_collection().find_one(
        {"run_id": run_id, "namespace_name": namespace}, {"graph_name": 1, "graph_version": 1}
    )
    if found is None:
        raise NotFound(f"Run {run_id} not found in namespace {namespace}")
    return found


async def _snapshots(run_id: str) -> list[domain.StateSnapshot]:
    """A run's states in creation order (their ids grow with it)."""
    docs = sorted(await queries.run_states_where(run_id, {}, fields=DIFF_FIELDS), key=lambda d: d["_id"])
    return [
        domain.StateSnapshot(
            state_id=str(doc["_id"]),
            identifier=doc["identifier"],
            status=doc["status"],
            inputs=doc.get("inputs") or {},
            outputs=doc.get("outputs") or {},
            fanout_path=doc.get("fanout_path") or (),
            output_index=doc.get("output_index", 0),
            retry_count=doc.get("retry_count", 0),
            join_generation=doc.get("join_generation", 0),
            order=order,
        )
        for order, doc in enumerate(docs)
    ]


def _side(state: domain.StateSnapshot | None) -> DiffSide | None:
    if state is None:
        return None
    return DiffSide(
        state_id=state.state_id, status=state.status, inputs=dict(state.inputs), outputs=dict(state.outputs)
    )


def _entry(node: domain.NodeDiff) -> NodeDiff:
    return NodeDiff(
        identifier=node.identifier,
        position=list(node.position),
        change=node.change.value,
        a=_side(node.a),
        b=_side(node.b),
        fields=[FieldDiff(path=f.path, a=f.a, b=f.b) for f in node.fields],
    )


async def diff(ctx: AppContext, namespace: str, a: str, b: str) -> RunDiff:
    """Run A against run B, node by node (404 for a run unknown here, 422 for runs of two graphs)."""
    run_a, run_b = await _run(namespace, a), await _run(namespace, b)
    if run_a["graph_name"] != run_b["graph_name"]:
        raise Unprocessable(
            f"Runs {a} and {b} are runs of different graphs ({run_a['graph_name']} and "
            f"{run_b['graph_name']}): only runs of one graph can be compared"
        )
    graph_name = run_a["graph_name"]
    version = max(run_a.get("graph_version", 0), run_b.get("graph_version", 0))
    graph = await template_for(ctx, namespace, graph_name, version)
    node_order = [node.identifier for node in graph.nodes] if graph is not None else []
    result = domain.diff_runs(await _snapshots(a), await _snapshots(b), node_order)
    return RunDiff(
        a=a,
        b=b,
        graph=graph_name,
        summary=DiffSummary(**result.summary),
        nodes=[_entry(node) for node in result.nodes],
    )
