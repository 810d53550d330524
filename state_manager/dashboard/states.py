"""One state: every time, why it waits (issue 18), its relatives as links, its data as readable
JSON, the full error, and Retry for a failed one."""

from __future__ import annotations

from uuid import uuid4

from bson import ObjectId
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from state_manager.clock import now_ms
from state_manager.dashboard.common import (
    MOVING_STATE_STATUSES,
    RETRYABLE_STATE_STATUSES,
    context,
    html_errors,
    page,
)
from state_manager.dashboard.render import render, ui_url
from state_manager.db.documents import State
from state_manager.domain.status import StateStatus
from state_manager.domain.why import Why
from state_manager.services import dashboard_reads, run_views, why
from state_manager.services.context import AppContext
from state_manager.services.states import manual_retry

router = APIRouter()
CHILDREN_SHOWN = 50
BLOCKERS_SHOWN = 10  # what holds a waiting state, linked at most


def may_wait(state: State) -> bool:
    """Whether `why` can find the state waiting: not claimed yet (due later, queued, held back by
    a limit), or ran with a join above it waiting for branches still open below it. Any other
    state is not asked (no reads)."""
    ran = state.status in (StateStatus.SUCCESS, StateStatus.EXECUTED)
    return state.status == StateStatus.CREATED or (ran and state.below_open > 0)


async def _why(ctx: AppContext, ns: str, state: State) -> Why | None:
    """Why the state waits; None when it does not."""
    if state.id is None or not may_wait(state):
        return None
    _, answer = await why.state_why(ctx, ns, state.id)
    return answer if answer.waiting else None


@router.get("/ns/{ns}/states/{state_id}")
@html_errors
async def state_page(request: Request, ns: str, state_id: str) -> Response:
    state = await run_views.find_state(ns, state_id)
    view = run_views.state_view(state)
    waits = await _why(context(request), ns, state)
    children, more_children = await dashboard_reads.children(context(request), ns, state, CHILDREN_SHOWN)
    retries = await dashboard_reads.retries(ns, state)
    retry_of = dashboard_reads.retry_of(state)
    # `parents` names every ancestor; the direct parent is the last one written.
    known = await dashboard_reads.find_states_by_ids(
        ns, [*view.parents.values(), *([retry_of] if retry_of else [])]
    )
    run_cancelled = state.run_cancelled
    values = await page(
        request,
        ns,
        "runs",
        state=view,
        parents=[(ident, sid, known.get(sid)) for ident, sid in view.parents.items()],
        children=[run_views.state_view(c) for c in children],
        more_children=more_children,
        retries=[run_views.state_view(r) for r in retries],
        retry_of=retry_of,
        can_retry=view.status in RETRYABLE_STATE_STATUSES and not run_cancelled and not retries,
        run_cancelled=run_cancelled,
        lease_expired=view.lease_expires_at is not None and view.lease_expires_at < now_ms(),
        now=now_ms(),
        why=waits,
        blockers_shown=BLOCKERS_SHOWN,
    )
    moving = [view.status, *(r.status for r in retries)]
    # A join waiting above a state that ran changes as its branches end: followed too.
    live = waits is not None or any(status in MOVING_STATE_STATUSES for status in moving)
    return render(request, "state.html", values, live=live)


@router.post("/ns/{ns}/states/{state_id}/retry")
@html_errors
async def retry(request: Request, ns: str, state_id: str) -> Response:
    """An operator's retry with a fresh fan-out id; a 409 (already retried, run cancelled) is shown
    as a message on the error page."""
    state = await run_views.find_state(ns, state_id)
    new = await manual_retry(context(request), state.namespace_name, ObjectId(state_id), str(uuid4()))
    return RedirectResponse(ui_url(ns, "states", str(new.id)) + "?msg=state-retried", status_code=303)
