"""The runs of a namespace, one run (tabs: graph, states, timeline, store; why it waits), and its
actions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from state_manager.clock import now_ms
from state_manager.dashboard import dag, node_timeline, run_notes, timeline
from state_manager.dashboard.common import (
    FINAL_RUN_STATUSES,
    RUN_STATUSES,
    STATE_STATUSES,
    context,
    html_errors,
    page,
)
from state_manager.dashboard.render import render, ui_url
from state_manager.domain.durations import duration_words
from state_manager.errors import BadRequest
from state_manager.schemas.runs import RunDetail, RunGraphView, StatePage, StateView
from state_manager.services import dashboard_reads, run_views, why
from state_manager.services import runs as run_service
from state_manager.services.graphs import template_for

router = APIRouter()

RUNS_PER_PAGE = 50
STATES_PER_PAGE = 50
TIMELINE_PER_PAGE = 100
GROUP_ABOVE = 40  # a timeline of more states than this is drawn one row per node
GROUPED_MAX = 5_000  # states read for the timeline by node
BY = ("node", "state")
RANGES = {
    "15m": 15 * 60_000,
    "1h": 3_600_000,
    "24h": 86_400_000,
    "7d": 7 * 86_400_000,
    "30d": 30 * 86_400_000,
}
TABS = ("graph", "states", "timeline", "store")
FORKS_SHOWN = 20  # forks of a run linked from its page
FAILED = ("ERRORED", "TIMEDOUT", "NEXT_CREATED_ERROR")
# A run's waiting states summed up by reason (services/why.py), in a few words each.
WAIT_REASONS = {
    "delayed": "not due yet",
    "no_runtime": "no runtime",
    "queued": "in its node's queue",
    "concurrency": "node's concurrency limit",
    "run_concurrency": "graph's run limit",
    "rate_limit": "node's rate limit",
    "join": "join waits for branches",
}


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


def retention_note(seconds: float | None) -> str:
    """The runs page's footnote: how long a finished run stays (RUN_RETENTION)."""
    if seconds is None:
        return "Finished runs are kept forever (RUN_RETENTION is not set)."
    return f"Finished runs are kept for {duration_words(seconds)} after they end (RUN_RETENTION)."


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
        retention=retention_note(context(request).settings.run_retention),
    )
    return render(request, "runs.html", values, live=live)


def _failed_count(detail: RunDetail) -> int:
    return sum(detail.counts.get(status, 0) for status in FAILED)


def _node_link(request: Request, identifier: str, status: str = "") -> str:
    """The run's states of one node (and status): the drill-down of the graph and the timeline."""
    query = {"tab": "states", "identifier": identifier, **({"status": status} if status else {})}
    return request.url.path + "?" + urlencode(query)


def _dag_nodes(view: RunGraphView) -> list[dag.DagNode]:
    return [
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


async def _all_states(
    ns: str, run_id: str, first: StatePage, status: str | None, identifier: str | None
) -> tuple[list[StateView], bool]:
    """`first` and the states after it, up to GROUPED_MAX in all (read in one call: a call per
    few hundred states costs more than the states); and whether some were left."""
    if first.next_cursor is None:
        return list(first.states), False
    rest = await run_views.state_page(
        ns,
        run_id,
        status=status,
        identifier=identifier,
        limit=GROUPED_MAX - len(first.states),
        cursor=first.next_cursor,
    )
    return [*first.states, *rest.states], rest.next_cursor is not None


async def _states_tab(ns: str, run_id: str, f: dict[str, str], cursor: str | None) -> dict[str, Any]:
    found = await run_views.state_page(
        ns,
        run_id,
        status=_status(f["status"], STATE_STATUSES),
        identifier=f["identifier"] or None,
        limit=STATES_PER_PAGE,
        cursor=cursor,
    )
    return {"states": found.states, "next_cursor": found.next_cursor}


def _by_node(by: str, cursor: str | None, first: StatePage) -> bool:
    """Whether the timeline is drawn one row per node: when asked (`by`), else for a run with
    more than GROUP_ABOVE states (seen on its first page of attempts)."""
    if by:
        return by == "node"
    return cursor is None and (first.next_cursor is not None or len(first.states) > GROUP_ABOVE)


async def _timeline_tab(
    request: Request, ns: str, run_id: str, f: dict[str, str], cursor: str | None, now: int
) -> dict[str, Any]:
    """One bar per attempt, a page at a time; or, for many states (or `by=node`), one row per
    node over all of them."""
    status, identifier = _status(f["status"], STATE_STATUSES), f["identifier"] or None
    if f["by"] == "node":
        cursor = None
    first = await run_views.state_page(
        ns, run_id, status=status, identifier=identifier, limit=TIMELINE_PER_PAGE, cursor=cursor
    )
    if not _by_node(f["by"], cursor, first):
        state_link = lambda state_id: ui_url(ns, "states", state_id)  # noqa: E731
        return {
            "states": first.states,
            "next_cursor": first.next_cursor,
            "by_node": False,
            "timeline": timeline.render_svg(first.states, now, state_link),
        }
    states, truncated = await _all_states(ns, run_id, first, status, identifier)
    spans = node_timeline.group_by_node(states, now)
    node_link = lambda ident: _node_link(request, ident, f["status"])  # noqa: E731
    return {
        "states": states,
        "next_cursor": None,
        "first_page": True,
        "by_node": True,
        "spans": spans,
        "origin": min((s.first_due for s in spans), default=now),
        "truncated": truncated,
        "node_link": node_link,
        "timeline": node_timeline.render_svg(spans, node_link),
    }


@router.get("/ns/{ns}/runs/{run_id}")
@html_errors
async def run_page(
    request: Request,
    ns: str,
    run_id: str,
    tab: str = "graph",
    status: str = "",
    identifier: str = "",
    by: str = "",
    cursor: str | None = None,
) -> Response:
    ctx = context(request)
    tab = tab if tab in TABS else "graph"
    now = now_ms()
    detail = await run_views.run_detail(ns, run_id)
    f = {"status": status, "identifier": identifier, "by": by if by in BY else ""}
    open_waiting = detail.status not in FINAL_RUN_STATUSES and bool(detail.counts.get("CREATED"))
    view = await run_views.template_graph(ctx, ns, run_id) if tab == "graph" or open_waiting else None
    # Why it waits: read only while it goes on (an ended run waits for nothing).
    ongoing = detail.status not in FINAL_RUN_STATUSES
    waits = await why.run_why(ctx, ns, run_id) if ongoing else []
    values = await page(
        request,
        ns,
        "runs",
        run=detail,
        tab=tab,
        tabs=TABS,
        failed=_failed_count(detail),
        can_cancel=detail.status not in FINAL_RUN_STATUSES,
        can_fork=detail.status in FINAL_RUN_STATUSES,
        forks_shown=FORKS_SHOWN,
        mini_bar=dag.mini_bar,
        f=f,
        statuses=STATE_STATUSES,
        now=now,
        notes=await run_notes.run_notes(ctx, ns, detail, view.nodes if view else None, now),
        waits=waits,
        wait_reasons=WAIT_REASONS,
    )
    if tab == "graph" and view is not None:
        svg = dag.render_svg(
            _dag_nodes(view), href=lambda ident: _node_link(request, ident), title=detail.graph_name
        )
        values.update(graph_nodes=view.nodes, svg=svg)
    elif tab in {"states", "timeline"}:
        template = await template_for(ctx, ns, detail.graph_name, detail.graph_version)
        values.update(
            first_page=cursor is None, identifiers=[n.identifier for n in template.nodes] if template else []
        )
        if tab == "states":
            values.update(await _states_tab(ns, run_id, f, cursor or None))
        else:
            values.update(await _timeline_tab(request, ns, run_id, f, cursor or None, now))
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
