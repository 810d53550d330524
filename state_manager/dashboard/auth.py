"""Logging in and out, and the way in (`/ui` leads to the runs of the first namespace).

Wrong keys are counted per client address (`login_limit.py`): past the allowance a login
answers 429 with `Retry-After` and the key is not checked."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, quote

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from state_manager.clock import now_ms
from state_manager.dashboard import session
from state_manager.dashboard.common import context, notice, page
from state_manager.dashboard.login_limit import LoginLimiter
from state_manager.dashboard.render import render
from state_manager.services import dashboard_reads

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
    cookie = request.cookies.get(session.COOKIE_NAME)
    if session.is_valid(_cookie_key(request), cookie, now_ms()):
        return RedirectResponse(target or "/ui", status_code=303)
    return _login_page(request, target, None)


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form body (the only kind these pages send), without python-multipart."""
    body = await request.body()
    if len(body) > 16 * 1024:
        return {}
    fields = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    api_key, target = form.get("api_key", ""), session.safe_next(form.get("next"))
    # No await from here on: concurrent attempts from one address cannot all pass the check
    # before any of them is counted.
    limiter, address = _limiter(request), _address(request)
    wait = limiter.retry_after(address)
    if wait is not None:
        return _too_many(request, target, wait)
    expected = context(request).settings.state_manager_secret.get_secret_value()
    if not session.key_matches(expected, api_key):
        _count_failure(limiter, address)
        return _login_page(request, target, "That is not this server's API key.", code=401)
    limiter.succeeded(address)
    return _logged_in(request, target)


def _logged_in(request: Request, target: str | None) -> Response:
    """Off to `target` (or the way in) with a new session cookie."""
    response = RedirectResponse(target or "/ui", status_code=303)
    response.set_cookie(
        session.COOKIE_NAME,
        session.issue(_cookie_key(request), now_ms()),
        max_age=session.SESSION_MS // 1000,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


def _count_failure(limiter: LoginLimiter, address: str) -> None:
    """Count a wrong key; the failure that uses up the address's allowance is logged once (each
    attempt is in the `http_request` lines anyway: 401, then 429)."""
    if limiter.failed(address):
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
    """The runs of the namespace of the newest run (or of the first namespace there is)."""
    namespace = await dashboard_reads.newest_namespace()
    if namespace is None:
        return render(request, "namespaces.html", await page(request, "", "home"))
    return RedirectResponse(f"/ui/ns/{quote(namespace, safe='')}/runs", status_code=303)
