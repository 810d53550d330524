"""Graphs (validation, template DAG, nodes, policies, secret names, cron triggers, recent runs)
and nodes (registered fields, secret names, queue health, flow-control limits in use)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from state_manager.clock import now_ms
from state_manager.dashboard import dag
from state_manager.dashboard.common import context, html_errors, page
from state_manager.dashboard.render import render
from state_manager.domain.cron import CronError, next_fire_after
from state_manager.errors import NotFound
from state_manager.services import dashboard_reads, flow_view, queues, run_views
from state_manager.services.graphs import find_graph, list_graphs
from state_manager.services.nodes import list_nodes

router = APIRouter()
RECENT_RUNS = 10
_PLACEHOLDER = re.compile(r"(\$\{\{.*?\}\})")


def placeholder_parts(value: Any) -> list[tuple[str, bool]]:
    """An input value split into plain text and `${{ ... }}` placeholders (True), for display."""
    text = value if isinstance(value, str) else repr(value)
    return [(part, bool(_PLACEHOLDER.fullmatch(part))) for part in _PLACEHOLDER.split(text) if part]


def schema_fields(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The fields of a pydantic-style JSON schema: name, type and whether it is required."""
    required = set(schema.get("required") or [])
    props = schema.get("properties") or {}
    return [
        {"name": name, "type": str(spec.get("type", "any")), "required": name in required}
        for name, spec in props.items()
        if isinstance(spec, dict)
    ]


@router.get("/ns/{ns}/graphs")
@html_errors
async def graphs_page(request: Request, ns: str) -> Response:
    graphs = await list_graphs(ns)
    return render(request, "graphs.html", await page(request, ns, "graphs", graphs=graphs))


def _triggers(graph_triggers: list[dict[str, Any]], schedules: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for trigger in graph_triggers:
        expression = str((trigger.get("value") or {}).get("expression", ""))
        schedule = schedules.get(expression)
        next_ms = schedule.next_fire_ms if schedule else None
        if next_ms is None:  # not scheduled (an INVALID graph never fires): when it would
            try:
                next_ms = int(next_fire_after(expression, datetime.now(UTC)).timestamp() * 1000)
            except CronError:
                next_ms = None
        out.append(
            {
                "expression": expression,
                "next_ms": next_ms,
                "scheduled": schedule is not None,
                "last_run_id": schedule.last_run_id if schedule else None,
                "last_error": schedule.last_error if schedule else None,
            }
        )
    return out


@router.get("/ns/{ns}/graphs/{name}")
@html_errors
async def graph_page(request: Request, ns: str, name: str) -> Response:
    graph = await find_graph(ns, name)
    if graph is None:
        raise NotFound(f"Graph {name} not found in namespace {ns}")
    nodes = [
        dag.DagNode(
            identifier=n.identifier,
            node_name=n.node_name,
            next_nodes=tuple(n.next_nodes or ()),
            unites=n.unites.identifier if n.unites else None,
        )
        for n in graph.nodes
    ]
    svg = dag.render_svg(nodes, href=lambda ident: f"#node-{ident}", title=graph.name)
    schedules = {s.expression: s for s in await dashboard_reads.schedules(ns, name)}
    recent = await run_views.search_runs(ns, graph=name, limit=RECENT_RUNS)
    values = await page(
        request,
        ns,
        "graphs",
        graph=graph,
        svg=svg,
        secret_names=sorted(graph.secrets),
        triggers=_triggers(graph.triggers, schedules),
        recent=recent.runs,
        parts=placeholder_parts,
        mini_bar=dag.mini_bar,
    )
    return render(request, "graph.html", values)


@router.get("/ns/{ns}/nodes")
@html_errors
async def nodes_page(request: Request, ns: str) -> Response:
    nodes = await list_nodes(ns)
    health = await queues.queue_health(context(request), ns)
    limits = await flow_view.limits_in_use(ns)
    values = await page(
        request,
        ns,
        "nodes",
        nodes=nodes,
        health=health,
        limits=limits,
        stalled=[row for row in health.nodes if row.stalled],
        fields=schema_fields,
        now=now_ms(),
    )
    return render(request, "nodes.html", values, live=True)
