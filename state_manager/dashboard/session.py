"""The dashboard's session cookie and the origin check of its POSTs. Pure functions, no I/O.

A session is `<payload>.<signature>`: the payload is URL-safe base64 of
`{"iat": issued_ms, "exp": expires_ms, "kid": who, "nonce": ...}` and the signature an
HMAC-SHA256 of it under a key derived from the server's API key (STATE_MANAGER_SECRET). `kid` is
who logged in: "root" for the server's key, else the public id of a scoped key (never the key
itself); the guard checks on every request that this key is still valid (dashboard/access.py).
Changing the API key therefore ends every session; nothing is stored on the server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from urllib.parse import urlsplit

COOKIE_NAME = "exosphere_session"
SESSION_MS = 12 * 3600 * 1000
_KEY_LABEL = b"exosphere-dashboard-session-v1"
# What `issue` makes: base64url payload (about 80 characters), a dot, a 43-character base64url
# HMAC-SHA256. Anything else (other characters, other lengths) is refused unread.
_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,1024}\.[A-Za-z0-9_-]{43}")
ROOT_KID = "root"  # the `kid` of a session opened with the server's key
# A `kid`: root, or a scoped key's public id (services/keys.py).
_KID = re.compile(r"root|[0-9a-f]{16}")


def session_key(api_key: str) -> bytes:
    """The signing key: derived from the server's API key, never the key itself."""
    return hmac.new(api_key.encode(), _KEY_LABEL, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())


def issue(key: bytes, now_ms: int, lifetime_ms: int = SESSION_MS, kid: str = ROOT_KID) -> str:
    """A new session of `kid` (root, or a scoped key's id), valid from `now_ms` for `lifetime_ms`."""
    body = {"iat": now_ms, "exp": now_ms + lifetime_ms, "kid": kid, "nonce": secrets.token_urlsafe(12)}
    payload = _b64(json.dumps(body, separators=(",", ":")).encode())
    return f"{payload}.{_sign(key, payload)}"


def is_valid(key: bytes, value: str | None, now_ms: int) -> bool:
    """Whether `value` is a session: see `holder`."""
    return holder(key, value, now_ms) is not None


def holder(key: bytes, value: str | None, now_ms: int) -> str | None:
    """Who a session belongs to (its `kid`: "root" or a key id), or None when `value` was not
    signed with `key`, was issued after now, has expired or names no one.

    The one place that decides "is this a session": any value that is not one is None, never
    an exception. The value comes from a cookie that any site on the same host can set, so it
    may hold anything (non-ASCII text, control characters, megabytes); its shape is checked
    before anything else touches it.
    """
    if value is None or not _SHAPE.fullmatch(value):
        return None
    payload, signature = value.split(".")
    if not hmac.compare_digest(_sign(key, payload).encode(), signature.encode()):
        return None
    claims = _claims(payload)
    if claims is None or not claims[0] <= now_ms < claims[1]:
        return None
    return claims[2]


def _claims(payload: str) -> tuple[int, int, str] | None:
    """`(issued_ms, expires_ms, kid)` of a signed payload, None when it does not hold two integers
    and a `kid` (only a payload we signed gets here, but "we signed it" is no reason to crash on
    it; a session signed before sessions named their key has none, and ends)."""
    try:
        body = json.loads(_unb64(payload))
    except (ValueError, RecursionError):  # bad base64, not UTF-8, not JSON, nested too deep
        return None
    if not isinstance(body, dict):
        return None
    issued, expires, kid = body.get("iat"), body.get("exp"), body.get("kid")
    if type(issued) is not int or type(expires) is not int:  # not bool, float or text
        return None
    if not isinstance(kid, str) or not _KID.fullmatch(kid):
        return None
    return issued, expires, kid


def key_matches(expected: str, given: str) -> bool:
    """The login check: constant time, whatever the lengths."""
    return hmac.compare_digest(expected.encode(), given.encode())


def same_origin(host: str | None, origin: str | None, referer: str | None) -> bool:
    """Whether a POST comes from a page of this server: its `Origin` (or, without one, its
    `Referer`) names the host the request was sent to. Neither header: refused."""
    source = origin if origin and origin != "null" else referer
    if not host or not source:
        return False
    parts = urlsplit(source)
    return parts.scheme in {"http", "https"} and parts.netloc.lower() == host.lower()


def safe_next(target: str | None) -> str | None:
    """A post-login destination, only if it is a path of the dashboard (no open redirect)."""
    if not target or not target.startswith("/ui/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    return None if parts.scheme or parts.netloc else target
