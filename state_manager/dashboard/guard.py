"""Every `/ui` request passes here first: the session check, the origin check of POSTs, and
the security headers of every answer (pure ASGI, so no route can forget them).

Deny by default: any `/ui` path but the login page and the static assets needs a valid session.
Without one a GET is sent to the login page (and shows no data); any other method is refused.
A POST whose Origin (or Referer) is not this server's host is refused (403), login included.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import cookie_parser
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from state_manager.clock import now_ms
from state_manager.dashboard import session

PREFIX = "/ui"
LOGIN_PATH = "/ui/login"
STATIC_PREFIX = "/ui/static/"

# Only this server's own scripts and styles; no inline script or style attribute, no framing.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Same-origin keeps the Referer (and Origin) on our own POSTs, and off other sites.
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def _refusal(reason: str) -> Response:
    body = f"<!doctype html><title>Refused</title><h1>403 Forbidden</h1><p>{reason}</p>"
    return HTMLResponse(body, status_code=403)


class DashboardGuard:
    def __init__(self, app: ASGIApp, *, api_key: str) -> None:
        self.app = app
        self.key = session.session_key(api_key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        send = _with_headers(send, static=path.startswith(STATIC_PREFIX))
        refusal = self._check(scope, path)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _check(self, scope: Scope, path: str) -> Response | None:
        headers = Headers(scope=scope)
        method = scope["method"]
        if method not in {"GET", "HEAD"} and not session.same_origin(
            headers.get("host"), headers.get("origin"), headers.get("referer")
        ):
            return _refusal("This form was not sent from a page of this server.")
        if path == LOGIN_PATH or path.startswith(STATIC_PREFIX):
            return None
        cookie = cookie_parser(headers.get("cookie", "")).get(session.COOKIE_NAME)
        if session.is_valid(self.key, cookie, now_ms()):
            return None
        if method not in {"GET", "HEAD"}:
            return _refusal("Your session has ended: log in again.")
        target = path + (("?" + scope["query_string"].decode("latin-1")) if scope.get("query_string") else "")
        return RedirectResponse(f"{LOGIN_PATH}?next={quote(target, safe='')}", status_code=303)


def logged_in(key: bytes, cookie: str | None) -> bool:
    return session.is_valid(key, cookie, now_ms())


def _with_headers(send: Send, *, static: bool) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            for name, value in SECURITY_HEADERS.items():
                headers[name] = value
            if not static:  # pages show live data and are behind a login: never cached
                headers["Cache-Control"] = "no-store"
        await send(message)

    return wrapped
