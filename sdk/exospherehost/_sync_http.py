"""The heartbeat thread's HTTP client: synchronous httpx, independent of any event loop.

A node that blocks the runtime's event loop (CPU work or a blocking call inside `async def
execute`) must not cost its state the lease, so heartbeats are sent from a thread of their own
(`_heartbeats.py`) through this client: one `httpx.Client` (one small keep-alive pool) per
`Runtime`. Failures map onto the same exceptions as `_http.py`: a non-2xx answer becomes the
`StateManagerError` subclass for its status (with the body's `detail` and `code`); a network
failure, a timeout or an unreadable body becomes `TransportError` (`ServerUnreachableError` when
no connection could be made), naming the server's address, as `_http.network_error` words it.

A transport given to the `Runtime` (e.g. `httpx.MockTransport` in tests) is asynchronous; the
heartbeat thread then drives it on a private event loop of its own, never on the runtime's.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import httpx

from ._http import CLAIM_TOKEN_HEADER, network_error
from ._version import __version__
from .errors import TransportError, error_for_status

__all__ = ["HEARTBEAT_TIMEOUT", "SyncHeartbeatClient"]

HEARTBEAT_TIMEOUT = 10.0
"""Seconds allowed for one heartbeat request: a beat that takes longer is late anyway."""

_CONNECT_TIMEOUT = 5.0
_KEEPALIVE_SECONDS = 4.0
"""Below uvicorn's default keep-alive (5 s), as in `_http.py`."""
_MAX_DETAIL_CHARS = 2000


class SyncHeartbeatClient:
    """`POST /{version}/namespace/{namespace}/state/{id}/heartbeat`, synchronously.

    Not thread-safe: one thread (the runtime's heartbeat thread) uses it, and closes it.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        namespace: str,
        version: str = "v0",
        transport: httpx.AsyncBaseTransport | httpx.BaseTransport | None = None,
        timeout: float = HEARTBEAT_TIMEOUT,
    ) -> None:
        self.base_url = base_url
        self._api_key = api_key
        self._prefix = f"/{_segment(version)}/namespace/{_segment(namespace)}"
        self._given_transport = transport
        self._timeout = httpx.Timeout(timeout, connect=min(_CONNECT_TIMEOUT, timeout))
        self._client: httpx.Client | None = None

    def heartbeat(self, state_id: str, *, claim_token: str | None) -> dict[str, Any]:
        """Extend the lease of a claimed state; returns the answer (`status`, `lease_ms`, ...).

        Raises:
            StateManagerError: A subclass matching a non-2xx status (409: see `ConflictError`).
            TransportError: The request failed on the network or the answer was not a JSON object.
        """
        path = f"{self._prefix}/state/{_segment(state_id)}/heartbeat"
        headers = None if claim_token is None else {CLAIM_TOKEN_HEADER: claim_token}
        try:
            response = self._get_client().post(path, json={}, headers=headers)
        except httpx.HTTPError as exc:
            raise network_error(exc, self.base_url, "POST", path) from None
        if not response.is_success:
            detail, code = _detail_and_code(response)
            raise error_for_status(
                response.status_code, detail, method="POST", path=path, code=code, url=self.base_url
            )
        try:
            answer = response.json() if response.content else {}
        except ValueError:
            raise TransportError(
                f"the state manager at {self.base_url} answered POST {path} with a body that is not JSON"
            ) from None
        if not isinstance(answer, dict):
            raise TransportError(f"POST {path}: expected a JSON object, got {type(answer).__name__}")
        return answer

    def close(self) -> None:
        """Close the connection pool (and the private loop of an asynchronous transport)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _get_client(self) -> httpx.Client:
        if self._client is None:
            given = self._given_transport
            options: dict[str, Any] = {}
            if given is None:
                # httpx's own transport; without an explicit one, httpx also honours the
                # environment's HTTP_PROXY / HTTPS_PROXY / NO_PROXY, as `_http.py` does.
                options["limits"] = httpx.Limits(max_connections=4, keepalive_expiry=_KEEPALIVE_SECONDS)
            elif isinstance(given, httpx.AsyncBaseTransport):
                options["transport"] = _OnPrivateLoop(given)
            else:
                options["transport"] = given
            self._client = httpx.Client(
                base_url=self.base_url,
                headers={"x-api-key": self._api_key, "user-agent": f"exospherehost-python/{__version__}"},
                timeout=self._timeout,
                **options,
            )
        return self._client


class _OnPrivateLoop(httpx.BaseTransport):
    """Drives an asynchronous transport from synchronous code, on an event loop of its own.

    The loop is created by, and only ever runs in, the thread that sends (the heartbeat thread).
    Closing it leaves the given transport open: the runtime's own client owns that.
    """

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._transport = transport
        self._loop: asyncio.AbstractEventLoop | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(self._send(request))

    async def _send(self, request: httpx.Request) -> httpx.Response:
        response = await self._transport.handle_async_request(request)
        try:
            content = await response.aread()
        finally:
            await response.aclose()
        return httpx.Response(response.status_code, headers=response.headers, content=content)

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.close()


def _segment(value: str) -> str:
    return quote(value, safe="")


def _detail_and_code(response: httpx.Response) -> tuple[Any, str | None]:
    """The `detail` of an error answer (its text when not the usual JSON object) and its `code`."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:_MAX_DETAIL_CHARS] or response.reason_phrase, None
    if not isinstance(data, dict):
        return data, None
    code = data.get("code")
    return data.get("detail", data), code if isinstance(code, str) else None
