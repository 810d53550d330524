"""What every dashboard page shares: the page context (namespace switcher, navigation), the
HTML error pages for domain errors and refusals, the app context and the messages shown after an
action."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from state_manager.dashboard import access
from state_manager.dashboard.render import plural, render
from state_manager.domain.access import Action, may
from state_manager.errors import Conflict, DomainError, Forbidden, InvalidTransition, NotFound
from state_manager.services.context import AppContext

RUN_STATUSES = ("PENDING", "RUNNING", "SUCCESS", "FAILED", "CANCELLED")
FINAL_RUN_STATUSES = frozenset({"SUCCESS", "FAILED", "CANCELLED"})
STATE_STATUSES = (
    "CREATED",
    "QUEUED",
    "EXECUTED",
    "SUCCESS",
    "PRUNED",
    "ERRORED",
    "TIMEDOUT",
    "NEXT_CREATED_ERROR",
    "RETRY_CREATED",
    "CANCELLED",
)
# A state in one of these may still change by itself (a runtime or the server moves it on).
MOVING_STATE_STATUSES = frozenset({"CREATED", "QUEUED", "EXECUTED"})
RETRYABLE_STATE_STATUSES = frozenset({"ERRORED", "TIMEDOUT", "NEXT_CREATED_ERROR", "CANCELLED"})

# Fixed texts for `?msg=` after an action (never text from the query string itself).
MESSAGES = {
    "cancelled": "The run was cancelled.",
    "retried": "Failed states were retried: {attempts}.",
    "retried-none": "Nothing was retried: the failed states were retried already.",
    "state-retried": "The state was retried: the new attempt is below.",
    "forked": "Forked: this new run reuses what the original computed above the node and runs the rest.",
    "logged-out": "You are logged out.",
    "session-revoked": "Your session has ended: the API key you logged in with was revoked. Log in again.",
    "session-expired": "Your session has ended: the API key you logged in with has expired. Log in again.",
    "key-revoked": "The key was revoked: it is refused at once here, and on every replica within 2 seconds.",
}

P = ParamSpec("P")


def context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.context
    return ctx


async def form_fields(request: Request, limit: int = 16 * 1024) -> dict[str, str]:
    """An urlencoded form body (the only kind these pages send), without python-multipart; {} when
    it is over `limit` bytes."""
    body = await request.body()
    if len(body) > limit:
        return {}
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


def notice(request: Request) -> str | None:
    text = MESSAGES.get(request.query_params.get("msg", ""))
    if text is None:
        return None
    count = request.query_params.get("n", "")
    known = count.isascii() and count.isdigit() and len(count) <= 9  # never a huge int() from a URL
    return text.format(attempts=plural(int(count), "new attempt") if known else "new attempts")


async def page(request: Request, ns: str, nav: str, **values: Any) -> dict[str, Any]:
    """The template values every page needs, plus `values`. The switcher lists only the namespaces
    the logged-in key may see."""
    namespaces = await access.visible_namespaces(access.principal(request))
    if ns and ns not in namespaces:
        namespaces = sorted([*namespaces, ns])
    return {"ns": ns, "namespaces": namespaces, "nav": nav, "notice": notice(request), **values}


_STATUS_CODES: list[tuple[type[DomainError], int]] = [
    (NotFound, 404),
    (Forbidden, 403),
    (Conflict, 409),
    (InvalidTransition, 409),
    (DomainError, 400),
]


async def error_page(request: Request, ns: str, exc: DomainError) -> HTMLResponse:
    code = next(c for kind, c in _STATUS_CODES if isinstance(exc, kind))
    values = await page(request, ns, "", code=code, detail=exc.detail)
    return render(request, "error.html", values, status_code=code)


def html_errors(
    handler: Callable[P, Awaitable[Response]],
) -> Callable[P, Awaitable[Response]]:
    """Show a domain error (unknown run, bad cursor, ...) as an HTML page, not the API's JSON."""

    @functools.wraps(handler)
    async def wrapped(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return await handler(*args, **kwargs)
        except DomainError as exc:
            request = kwargs["request"]
            assert isinstance(request, Request)
            return await error_page(request, str(kwargs.get("ns", "")), exc)

    return wrapped


async def refused_page(request: Request, exc: Exception) -> Response:
    """The 403 page of a refusal (access.Refused): it names the key, its role and the namespace;
    a key that may read nothing here (a worker's) gets a page that says so instead."""
    assert isinstance(exc, access.Refused)
    caller = exc.principal
    if caller is not None and not may(caller, Action.READ):
        return render(request, "cannot_read.html", await page(request, "", ""), status_code=403)
    # Back to a namespace the key may see, else to the way in.
    ns = exc.namespace if caller is not None and exc.namespace and caller.sees(exc.namespace) else ""
    values = await page(request, ns, "", code=403, detail=exc.reason)
    return render(request, "error.html", values, status_code=403)
