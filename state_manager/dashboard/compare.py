"""Two runs of one graph compared (services/run_diff.py): side by side, the changed nodes first
with the fields that differ, then what ran in one run only, then what is the same; and the
graph of each run with its boxes coloured by how their node differs."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from state_manager.dashboard import dag
from state_manager.dashboard.common import FINAL_RUN_STATUSES, context, html_errors, page
from state_manager.dashboard.render import render, ui_url
from state_manager.db.documents import GraphTemplate
from state_manager.schemas.diffs import NodeDiff
from state_manager.services import run_diff, run_views
from state_manager.services.context import AppContext
from state_manager.services.graphs import template_at, template_for

router = APIRouter()

SHORT = 120  # characters of a value shown in full; a longer one is cut, the rest one click away
ORDER = ("changed", "only_a", "only_b", "same")
LABELS = {"changed": "changed", "only_a": "only in A", "only_b": "only in B", "same": "same"}
SINGLE = {"same": "same in both runs", "only_a": "ran only in run A", "only_b": "ran only in run B"}


def node_change(entries: list[NodeDiff]) -> str:
    """How a node differs, from its entries (one per fan-out copy): all of one kind gives that
    kind, a mix is `changed`, and a node that ran in neither run is `none`."""
    kinds = {entry.change for entry in entries}
    if not kinds:
        return "none"
    return kinds.pop() if len(kinds) == 1 else "changed"


def node_note(entries: list[NodeDiff]) -> str:
    """The line a node's box shows: what changed in it, or how many of its copies differ how."""
    if not entries:
        return "ran in neither run"
    if len(entries) == 1:
        entry = entries[0]
        if entry.change == "changed":
            return "changed: " + ", ".join(f.path for f in entry.fields)
        return SINGLE[entry.change]
    counts = Counter[str](entry.change for entry in entries)
    return " · ".join(f"{counts[kind]} {LABELS[kind]}" for kind in ORDER if counts[kind])


def shown(value: Any) -> tuple[str, str | None]:
    """A compared value as text, and a short form of it when it is too long to show in full."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text, (text[:SHORT] + "…" if len(text) > SHORT else None)


def graph_nodes(
    graph: GraphTemplate | None, by_node: dict[str, list[NodeDiff]], side: str
) -> list[dag.DagNode]:
    """A run's graph (`side`: "a" or "b") as boxes coloured by change, with a lone box for each
    node that ran in that run but that the graph no longer has."""

    def box(identifier: str, node_name: str, next_nodes: tuple[str, ...], unites: str | None) -> dag.DagNode:
        entries = by_node.get(identifier, [])
        return dag.DagNode(
            identifier=identifier,
            node_name=node_name,
            next_nodes=next_nodes,
            unites=unites,
            change=node_change(entries),
            note=node_note(entries),
        )

    nodes = [
        box(n.identifier, n.node_name, tuple(n.next_nodes or ()), n.unites.identifier if n.unites else None)
        for n in (graph.nodes if graph is not None else [])
    ]
    known = {node.identifier for node in nodes}
    for identifier, entries in by_node.items():
        if identifier not in known and any(getattr(entry, side) is not None for entry in entries):
            nodes.append(box(identifier, identifier, (), None))
    return nodes


async def _graph(ctx: AppContext, ns: str, name: str, version: int) -> GraphTemplate | None:
    """The graph as the run ran it (the live one when that version was not kept)."""
    return await template_at(ctx, ns, name, version) or await template_for(ctx, ns, name, version)


def _states_of(ns: str, run_id: str) -> Callable[[str], str]:
    """A box's link: the run's states of that node."""
    base = ui_url(ns, "runs", run_id)
    return lambda identifier: base + "?" + urlencode({"tab": "states", "identifier": identifier})


@router.get("/ns/{ns}/runs/{a}/compare/{b}")
@html_errors
async def compare_page(request: Request, ns: str, a: str, b: str) -> Response:
    ctx = context(request)
    diff = await run_diff.diff(ctx, ns, a, b)
    run_a, run_b = await run_views.run_detail(ns, a), await run_views.run_detail(ns, b)
    by_node: dict[str, list[NodeDiff]] = {}
    for entry in diff.nodes:
        by_node.setdefault(entry.identifier, []).append(entry)
    drawings = []
    for side, run in (("a", run_a), ("b", run_b)):
        graph = await _graph(ctx, ns, run.graph_name, run.graph_version)
        svg = dag.render_svg(
            graph_nodes(graph, by_node, side),
            href=_states_of(ns, run.run_id),
            title=f"Run {side.upper()}: {run.graph_name} v{run.graph_version}",
        )
        drawings.append({"side": side, "run": run, "svg": svg})
    values = await page(
        request,
        ns,
        "runs",
        diff=diff,
        a=run_a,
        b=run_b,
        groups={kind: [entry for entry in diff.nodes if entry.change == kind] for kind in ORDER},
        labels=LABELS,
        fanned={identifier for identifier, entries in by_node.items() if len(entries) > 1},
        drawings=drawings,
        shown=shown,
    )
    live = run_a.status not in FINAL_RUN_STATUSES or run_b.status not in FINAL_RUN_STATUSES
    return render(request, "compare.html", values, live=live)
