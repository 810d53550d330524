"""The checks every `/v0` request passes before any of its body is read.

A pure ASGI middleware: a request without a valid `x-api-key` (the server's root key, or a scoped
key that is neither revoked nor expired: services/keys.py) is refused (401), and who is calling is
put in the request's state for the routes' access check (api/access.py); a body over
`MAX_REQUEST_BYTES` is refused (413) without the application reading or parsing it, so neither a
stranger nor an oversized upload costs the server more than its headers.

An oversized body is still read, and thrown away, after the 413 is sent (bounded: see
`RequestGuard._refuse_too_large`): closing while the client is still sending makes the kernel
reset the connection, and a client that sends its whole body before it reads (urllib, httpx)
then sees "connection reset by peer" instead of the 413.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from state_manager.domain.access import ROOT, Principal
from state_manager.services import keys

API_KEY_HEADER = b"x-api-key"
PROTECTED_PREFIX = "/v0/"
# After a 413 the rest of the body is read and discarded until this many times the limit has been
# read in all, or for this many seconds, whichever comes first; then the connection is closed.
DRAIN_FACTOR = 4
DRAIN_SECONDS = 5.0


class RequestGuard:
    def __init__(self, app: ASGIApp, *, api_key: str, max_body_bytes: int) -> None:
        self.app = app
        self._key = api_key.encode()
        self._max = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PROTECTED_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        presented = headers.get(API_KEY_HEADER, b"")
        if hmac.compare_digest(presented, self._key):
            caller: Principal | str = ROOT
        else:  # a scoped key (services/keys.py): read once per KEY_CACHE_SECONDS per process
            caller = await keys.resolve(scope["app"].state.context, presented.decode("latin-1"))
        if isinstance(caller, str):
            await _answer(send, 401, caller)
            return
        scope["state"] = {**scope.get("state", {}), "principal": caller}
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await _answer(send, 400, "Invalid Content-Length header")
                return
            if int(length) > self._max:
                await self._refuse_too_large(receive, send, f"{int(length)} bytes", int(length), read=0)
                return
            await self.app(scope, receive, send)
            return
        # No length given (a chunked upload): read at most the limit, then hand it on.
        body, read = await _read_up_to(receive, self._max)
        if read > self._max:
            await self._refuse_too_large(receive, send, f"more than {self._max} bytes", None, read=read)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _refuse_too_large(
        self, receive: Receive, send: Send, size: str, length: int | None, read: int
    ) -> None:
        """Answer 413 at once, then discard the rest of the body before the connection closes.

        A server that closes a socket with request bytes still unread makes the kernel reset the
        connection, and that reset can overtake the 413 at a client that is still sending: it
        sees "connection reset by peer" or "broken pipe", which a worker retries as a network
        fault, forever. So the 413 goes out first (a client that reads while it sends, like curl,
        stops there) and the body is then read and thrown away: at most DRAIN_FACTOR x the limit
        in all (a declared Content-Length beyond that is not drained at all) and for at most
        DRAIN_SECONDS, so a huge or stalled upload cannot hold the server. The response says
        `connection: close` and completes only after the drain (uvicorn hands no more of the body
        to the app once the response is complete), so the connection is closed cleanly when the
        whole body was read and reset only when a bound cut it short.
        """
        detail = f"Request body is {size}, over this server's limit of {self._max} bytes (MAX_REQUEST_BYTES)"
        await _answer(send, 413, detail, close=True, complete=False)
        bound = DRAIN_FACTOR * self._max
        if length is None or length <= bound:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DRAIN_SECONDS):
                    await _discard(receive, bound - read)
        await send({"type": "http.response.body", "body": b""})


async def _read_up_to(receive: Receive, limit: int) -> tuple[bytes, int]:
    """The body and its size, or (b"", the bytes read) once that went past `limit`: the rest is
    then left unread."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), size
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", size
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), size


async def _discard(receive: Receive, budget: int) -> None:
    """Read and drop the rest of the body: until its end, a disconnect, or `budget` bytes."""
    while budget > 0:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        budget -= len(message.get("body", b""))


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: disconnect notices, as usual

    return replay


async def _answer(
    send: Send, status: int, detail: str, *, close: bool = False, complete: bool = True
) -> None:
    """Send a JSON `{"detail": ...}` response; with `complete=False` the caller ends it (the client
    already has every byte: the Content-Length is met) by sending an empty last body message."""
    payload = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload, "more_body": not complete})
