"""The runs of a namespace, one run (tabs: graph, states, timeline, store), and its actions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from state_manager.clock import now_ms
from state_manager.dashboard import dag, timeline
from state_manager.dashboard.common import (
    FINAL_RUN_STATUSES,
    RUN_STATUSES,
    STATE_STATUSES,
    context,
    html_errors,
    page,
)
from state_manager.dashboard.render import render, ui_url
from state_manager.errors import BadRequest
from state_manager.schemas.runs import RunDetail
from state_manager.services import dashboard_reads, run_views
from state_manager.services import runs as run_service
from state_manager.services.graphs import template_for

router = APIRouter()

RUNS_PER_PAGE = 50
STATES_PER_PAGE = 50
TIMELINE_PER_PAGE = 100
RANGES = {
    "15m": 15 * 60_000,
    "1h": 3_600_000,
    "24h": 86_400_000,
    "7d": 7 * 86_400_000,
    "30d": 30 * 86_400_000,
}
TABS = ("graph", "states", "timeline", "store")
FAILED = ("ERRORED", "TIMEDOUT", "NEXT_CREATED_ERROR")


def parse_time(text: str, name: str) -> int | None:
    """A time filter: epoch ms, or an ISO date / date-time (UTC when it names no offset)."""
    text = text.strip()
    if not text:
        return None
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text.replace(" ", "T"))
    except ValueError as exc:
        raise BadRequest(f"{name} {text!r} is not a date and time (e.g. 2025-01-31T14:00)") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _status(value: str, allowed: tuple[str, ...]) -> str | None:
    if value and value not in allowed:
        raise BadRequest(f"Unknown status {value!r}: one of {', '.join(allowed)}")
    return value or None


@router.get("/ns/{ns}/runs")
@html_errors
async def runs_page(
    request: Request,
    ns: str,
    graph: str = "",
    status: str = "",
    window: Annotated[str, Query(alias="range")] = "",
    since: str = "",
    until: str = "",
    cursor: str | None = None,
    run: str = "",
) -> Response:
    if run.strip():
        return RedirectResponse(ui_url(ns, "runs", run.strip()), status_code=303)
    now = now_ms()
    since_ms = parse_time(since, "From")
    if window in RANGES:
        since_ms = max(since_ms or 0, now - RANGES[window])
    until_ms = parse_time(until, "Until")
    found = await run_views.search_runs(
        ns,
        graph=graph or None,
        status=_status(status, RUN_STATUSES),
        since_ms=since_ms,
        until_ms=until_ms,
        limit=RUNS_PER_PAGE,
        cursor=cursor or None,
    )
    filtered = bool(graph or status or window or since or until)
    # The first page may gain new runs at any time; an older page only changes while a run on it goes on.
    head = cursor is None and (until_ms is None or until_ms >= now)
    live = head or any(r.status not in FINAL_RUN_STATUSES for r in found.runs)
    graphs = await dashboard_reads.graph_names(ns)
    values = await page(
        request,
        ns,
        "runs",
        runs=found.runs,
        next_cursor=found.next_cursor,
        filtered=filtered,
        first_page=cursor is None,
        graphs=graphs,
        statuses=RUN_STATUSES,
        ranges=RANGES,
        f={"graph": graph, "status": status, "range": window, "since": since, "until": until},
        mini_bar=dag.mini_bar,
        example_graph=graph or (graphs[0] if graphs else "my-graph"),
        base_url=str(request.base_url).rstrip("/"),
    )
    return render(request, "runs.html", values, live=live)


def _failed_count(detail: RunDetail) -> int:
    return sum(detail.counts.get(status, 0) for status in FAILED)


@router.get("/ns/{ns}/runs/{run_id}")
@html_errors
async def run_page(
    request: Request,
    ns: str,
    run_id: str,
    tab: str = "graph",
    status: str = "",
    identifier: str = "",
    cursor: str | None = None,
) -> Response:
    ctx = context(request)
    tab = tab if tab in TABS else "graph"
    detail = await run_views.run_detail(ns, run_id)
    values = await page(
        request,
        ns,
        "runs",
        run=detail,
        tab=tab,
        tabs=TABS,
        failed=_failed_count(detail),
        can_cancel=detail.status not in FINAL_RUN_STATUSES,
        mini_bar=dag.mini_bar,
        f={"status": status, "identifier": identifier},
        statuses=STATE_STATUSES,
        now=now_ms(),
    )
    state_link = lambda state_id: ui_url(ns, "states", state_id)  # noqa: E731
    if tab == "graph":
        view = await run_views.template_graph(ctx, ns, run_id)
        nodes = [
            dag.DagNode(
                identifier=n.identifier,
                node_name=n.node_name,
                next_nodes=tuple(n.next_nodes),
                unites=n.unites,
                status=n.status,
                counts=n.counts,
                total=n.total,
            )
            for n in view.nodes
        ]
        link = lambda ident: request.url.path + "?" + f"tab=states&identifier={quote(ident, safe='')}"  # noqa: E731
        values.update(graph_nodes=view.nodes, svg=dag.render_svg(nodes, href=link, title=detail.graph_name))
    elif tab in {"states", "timeline"}:
        per_page = STATES_PER_PAGE if tab == "states" else TIMELINE_PER_PAGE
        states = await run_views.state_page(
            ns,
            run_id,
            status=_status(status, STATE_STATUSES),
            identifier=identifier or None,
            limit=per_page,
            cursor=cursor or None,
        )
        template = await template_for(ctx, ns, detail.graph_name, detail.graph_version)
        values.update(
            states=states.states,
            next_cursor=states.next_cursor,
            first_page=cursor is None,
            identifiers=[n.identifier for n in template.nodes] if template else [],
        )
        if tab == "timeline":
            values["timeline"] = timeline.render_svg(states.states, values["now"], state_link)
    return render(request, "run.html", values, live=detail.status not in FINAL_RUN_STATUSES)


@router.get("/ns/{ns}/runs/{run_id}/{action}")
@html_errors
async def confirm_page(request: Request, ns: str, run_id: str, action: str) -> Response:
    """The confirmation step of Cancel and Retry failed: a page with the form that does it."""
    if action not in {"cancel", "retry-failed"}:
        return RedirectResponse(ui_url(ns, "runs", run_id), status_code=303)
    detail = await run_views.run_detail(ns, run_id)
    values = await page(request, ns, "runs", run=detail, action=action, failed=_failed_count(detail))
    return render(request, "confirm.html", values)


@router.post("/ns/{ns}/runs/{run_id}/cancel")
@html_errors
async def cancel(request: Request, ns: str, run_id: str) -> Response:
    await run_service.cancel_run(context(request), ns, run_id)
    return RedirectResponse(ui_url(ns, "runs", run_id) + "?msg=cancelled", status_code=303)


@router.post("/ns/{ns}/runs/{run_id}/retry-failed")
@html_errors
async def retry_failed(request: Request, ns: str, run_id: str) -> Response:
    result = await run_views.retry_failed(context(request), ns, run_id)
    msg = f"retried&n={result.retried}" if result.retried else "retried-none"
    return RedirectResponse(ui_url(ns, "runs", run_id) + f"?msg={msg}", status_code=303)
