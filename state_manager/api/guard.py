"""The checks every `/v0` request passes before any of its body is read.

A pure ASGI middleware: a request without the right `x-api-key` is refused (401) and a body over
`MAX_REQUEST_BYTES` is refused (413) without the application reading or parsing it, so neither a
stranger nor an oversized upload costs the server more than its headers.
"""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_KEY_HEADER = b"x-api-key"
PROTECTED_PREFIX = "/v0/"


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
        if not hmac.compare_digest(headers.get(API_KEY_HEADER, b""), self._key):
            await _answer(send, 401, "Invalid API key")
            return
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await _answer(send, 400, "Invalid Content-Length header")
                return
            if int(length) > self._max:
                await _answer(send, 413, self._too_large(f"{int(length)} bytes"))
                return
            await self.app(scope, receive, send)
            return
        # No length given (a chunked upload): read at most the limit, then hand it on.
        body, more = await _read_up_to(receive, self._max)
        if more:
            await _answer(send, 413, self._too_large(f"more than {self._max} bytes"))
            return
        await self.app(scope, _replay(body, receive), send)

    def _too_large(self, size: str) -> str:
        return f"Request body is {size}, over this server's limit of {self._max} bytes (MAX_REQUEST_BYTES)"


async def _read_up_to(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The body, and whether it went past `limit` (then it is not read to the end)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: disconnect notices, as usual

    return replay


async def _answer(send: Send, status: int, detail: str) -> None:
    payload = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
