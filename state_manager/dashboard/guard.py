"""Every `/ui` request passes here first: the session check, the origin check of POSTs, and
the security headers of every answer (pure ASGI, so no route can forget them).

Deny by default: any `/ui` path but the login page and the static assets needs a valid session
of a key that is still valid (the root key, or a scoped key neither revoked nor expired), whose
holder is put in the request's state for the pages' access check (access.py). Without one a GET
is sent to the login page (and shows no data); any other method is refused. A POST whose Origin
(or Referer) is not this server's host is refused (403), login included.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import cookie_parser
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from state_manager.clock import now_ms
from state_manager.dashboard import access, session

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
        # The request's own state (who, what the audit log records): the server may hand every
        # request the same lifespan state dict.
        scope["state"] = dict(scope.get("state", {}))
        refusal = await self._check(scope, path)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _check(self, scope: Scope, path: str) -> Response | None:
        headers = Headers(scope=scope)
        method = scope["method"]
        if method not in {"GET", "HEAD"} and not session.same_origin(
            headers.get("host"), headers.get("origin"), headers.get("referer")
        ):
            return _refusal("This form was not sent from a page of this server.")
        if path == LOGIN_PATH or path.startswith(STATIC_PREFIX):
            return None
        cookie = cookie_parser(headers.get("cookie", "")).get(session.COOKIE_NAME)
        kid = session.holder(self.key, cookie, now_ms())
        if kid is None:
            return _to_login(scope, path, method, "")
        found = await access.who(scope["app"].state.context, kid)
        if isinstance(found, str):  # its key was revoked or has expired: the session ends
            return _to_login(scope, path, method, found)
        scope["state"]["principal"] = found
        return None


def _to_login(scope: Scope, path: str, method: str, why: str) -> Response:
    """A GET goes to the login page (saying why when its key ended the session, whose cookie is
    then removed), and comes back to `path` after it; any other method is refused."""
    if method not in {"GET", "HEAD"}:
        return _refusal("Your session has ended: log in again.")
    target = path + (("?" + scope["query_string"].decode("latin-1")) if scope.get("query_string") else "")
    msg = f"msg=session-{why}&" if why else ""
    response = RedirectResponse(f"{LOGIN_PATH}?{msg}next={quote(target, safe='')}", status_code=303)
    if why:
        response.delete_cookie(session.COOKIE_NAME, path=PREFIX, httponly=True, samesite="strict")
    return response


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
