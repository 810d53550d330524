"""Logging in and out, and the way in (`/ui` leads to the runs of the first namespace).

Any valid key logs in: the server's (root) or a scoped one (services/keys.py); the session names
the key by its id, never the key itself. Logins and failed logins go to the audit log. Wrong keys
are counted per client address (`login_limit.py`): past the allowance a login answers 429 with
`Retry-After` and the key is not checked."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from state_manager.clock import now_ms
from state_manager.dashboard import access, session
from state_manager.dashboard.common import context, form_fields, notice, page
from state_manager.dashboard.login_limit import LoginLimiter
from state_manager.dashboard.render import render
from state_manager.domain.access import Principal
from state_manager.services import dashboard_reads, keys

router = APIRouter()
log = structlog.get_logger(__name__)


def _cookie_key(request: Request) -> bytes:
    return session.session_key(context(request).settings.state_manager_secret.get_secret_value())


def _login_page(request: Request, next_url: str | None, error: str | None, code: int = 200) -> Response:
    values: dict[str, Any] = {"ns": "", "namespaces": [], "nav": "login", "notice": notice(request)}
    values.update(next=next_url, error=error)
    return render(request, "login.html", values, status_code=code)


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    target = session.safe_next(next)
    kid = session.holder(_cookie_key(request), request.cookies.get(session.COOKIE_NAME), now_ms())
    if kid is not None and not isinstance(await access.who(context(request), kid), str):
        return RedirectResponse(target or "/ui", status_code=303)
    return _login_page(request, target, None)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await form_fields(request)
    api_key, target = form.get("api_key", ""), session.safe_next(form.get("next"))
    limiter, address = _limiter(request), _address(request)
    wait = limiter.retry_after(address)
    if wait is not None:
        return _too_many(request, target, wait)
    # Counted as a failure before the key is read (an await), so concurrent attempts from one
    # address cannot all pass the check before any of them is counted; a good key forgets it.
    used_up = limiter.failed(address)
    found = await keys.resolve(context(request), api_key)
    if isinstance(found, str):
        if used_up:
            _log_limited(limiter, address)
        access.audit_mark(request, access.UNKNOWN, "dashboard.login_failed")
        return _login_page(request, target, _wrong_key(found), code=401)
    limiter.succeeded(address)
    access.audit_mark(request, found, "dashboard.login")
    return _logged_in(request, target, found)


def _wrong_key(reason: str) -> str:
    """What the login page says: a revoked or expired key by its name (only its holder, who
    typed its secret, learns it), anything else as not a key of this server."""
    if reason == "Invalid API key":
        return "That is not an API key of this server."
    return f"{reason}: ask an admin for a new one."


def _logged_in(request: Request, target: str | None, who: Principal) -> Response:
    """Off to `target` (or the way in) with a new session cookie naming the key (its id)."""
    response = RedirectResponse(target or "/ui", status_code=303)
    response.set_cookie(
        session.COOKIE_NAME,
        session.issue(_cookie_key(request), now_ms(), kid=access.kid_of(who)),
        max_age=session.SESSION_MS // 1000,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


def _log_limited(limiter: LoginLimiter, address: str) -> None:
    """Log the failure that used up the address's allowance, once (each attempt is in the
    `http_request` lines anyway: 401, then 429)."""
    log.warning(
        "dashboard_login_limited",
        client=address,
        failures=limiter.max_failures,
        window_seconds=limiter.window_seconds,
    )


def _limiter(request: Request) -> LoginLimiter:
    limiter: LoginLimiter = request.app.state.login_limiter
    return limiter


def _address(request: Request) -> str:
    """The client address as the ASGI server reports it. Behind a reverse proxy that is the
    proxy's (every client then shares one allowance) unless uvicorn trusts the proxy's
    X-Forwarded-For: it does for a proxy on 127.0.0.1, others are listed in FORWARDED_ALLOW_IPS.
    The header is never read here: anyone can send one."""
    return request.client.host if request.client else "unknown"


def _too_many(request: Request, target: str | None, wait: int) -> Response:
    """429 without looking at the key: the login page, saying how long to wait."""
    error = f"Too many wrong API keys from your address. Wait {wait} seconds, then try again."
    response = _login_page(request, target, error, code=429)
    response.headers["Retry-After"] = str(wait)
    return response


@router.post("/logout")
async def logout() -> Response:
    response = RedirectResponse("/ui/login?msg=logged-out", status_code=303)
    response.delete_cookie(session.COOKIE_NAME, path="/ui", httponly=True, samesite="strict")
    return response


async def home(request: Request) -> Response:
    """The runs of the namespace of the newest run (or of the first namespace there is), among
    those the logged-in key may see."""
    me = access.principal(request)
    namespaces = await access.visible_namespaces(me)
    newest = await dashboard_reads.newest_namespace()
    if newest is None or me is None or not me.sees(newest):
        newest = namespaces[0] if namespaces else None
    if newest is None:
        return render(request, "namespaces.html", await page(request, "", "home"))
    return RedirectResponse(f"/ui/ns/{quote(newest, safe='')}/runs", status_code=303)
