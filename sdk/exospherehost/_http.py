"""The HTTP layer: the only module that imports httpx.

`ApiClient` owns one `httpx.AsyncClient` per `Runtime` / `StateManager`, builds every v0 path in
one place, and turns failures into the typed exceptions of `errors.py`, each with a one-line
message naming the server's address:

- a non-2xx answer becomes the `StateManagerError` subclass for its status code;
- no connection at all (refused, unknown host, connect timeout, TLS) becomes
  `ServerUnreachableError`; another network failure, a timeout or an unreadable 2xx body
  `TransportError`. The httpx / aiohttp exception is kept as `__context__` (`raise ... from
  None`), so that a traceback shows the SDK's line, not the transport's 30 lines;
- a base URL that is not `http(s)://host` becomes `InvalidURLError`, before anything is sent.

After `ServerUnreachableError` or `AuthenticationError` (401) the connection pool is closed (when
no other call is using it): it is of no use, and a script that ends on the error then leaves no
aiohttp session unclosed ("Unclosed client session" at exit). The next call opens a new one.

Every call about a claimed state (secrets, heartbeat, the reports) takes the state's
`claim_token` and sends it as the `x-exosphere-claim-token` header, so that the server can refuse
(409) a call from a worker whose claim was superseded or whose lease ran out. A state without a
token (an upstream server) gets no header.

Transport: when `httpx-aiohttp` is installed (a dependency of the SDK) requests go over aiohttp
under the same httpx API; otherwise over httpx's own transport. Measured against our state manager
on one machine (benchmarks/RESULTS.md): the aiohttp transport sends ~3x the requests per second and
spends less than half the client CPU per node execution. A `transport=` given by the caller (e.g.
`httpx.MockTransport` in tests) is used as is. Connections are kept alive and reused: one client
(one pool) per `Runtime` / `StateManager` and event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from ._version import __version__
from .errors import (
    AuthenticationError,
    ExosphereError,
    InvalidURLError,
    ServerUnreachableError,
    TransportError,
    error_for_status,
)

try:  # the faster transport, when installed
    import aiohttp
    from httpx_aiohttp import AiohttpTransport
except ImportError:  # pragma: no cover - exercised only without the optional packages
    aiohttp = None  # type: ignore[assignment]
    AiohttpTransport = None  # type: ignore[assignment,misc]

__all__ = [
    "CLAIM_TOKEN_HEADER",
    "DEFAULT_TIMEOUT",
    "MAX_ERROR_BYTES",
    "ApiClient",
    "AsyncTransport",
    "default_transport",
    "network_error",
]

AsyncTransport = httpx.AsyncBaseTransport

DEFAULT_TIMEOUT = 30.0
"""Seconds allowed for one request (connect, read, write) unless a call needs longer."""

CLAIM_TOKEN_HEADER = "x-exosphere-claim-token"
"""The header that carries a claimed state's `claim_token` on every call about that state."""

MAX_ERROR_BYTES = 64 * 1024
"""The most UTF-8 bytes of error text sent in an errored report; longer text is truncated."""

_CONNECT_TIMEOUT = 10.0

_MAX_CONNECTIONS = 100

_KEEPALIVE_SECONDS = 4.0
"""How long an idle connection is kept for reuse: below uvicorn's default keep-alive (5 s), so
that the client never reuses a connection the server is closing at that moment."""

# Network failures: httpx's, and those the aiohttp transport may let through unmapped.
_NETWORK_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPError,) + (
    (aiohttp.ClientError,) if aiohttp is not None else ()
)

# Failures to connect at all. httpx-aiohttp maps most aiohttp errors (even a server that hung up
# mid-answer) to `httpx.ConnectTimeout`, so the aiohttp error behind it is what is classified.
_CONNECT_FAILURES: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout) + (
    (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) if aiohttp is not None else ()
)

_MAX_DETAIL_CHARS = 2000


class ApiClient:
    """Typed access to the state manager's `/{version}/namespace/{namespace}` API.

    The underlying `httpx.AsyncClient` is created on first use and bound to the running event
    loop. If the client is later used from another loop (e.g. a second `asyncio.run`), a fresh
    client is created for it, because httpx connections cannot move between loops.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        namespace: str,
        version: str = "v0",
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.base_url = base_url
        self._url_is_valid = _is_http_url(base_url)
        self._api_key = api_key
        self._prefix = f"/{_segment(version)}/namespace/{_segment(namespace)}"
        self._transport = transport
        self._timeout = httpx.Timeout(timeout, connect=min(_CONNECT_TIMEOUT, timeout))
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in_flight = 0

    # ------------------------------------------------------------------ lifecycle

    def _get_client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop or self._client.is_closed:
            if self._client is not None and self._loop is not None and not self._client.is_closed:
                _release_elsewhere(self._client, self._loop)
            # A new default transport per client: an aiohttp pool belongs to one event loop.
            transport = self._transport if self._transport is not None else default_transport(self.base_url)
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                headers={"x-api-key": self._api_key, "user-agent": f"exospherehost-python/{__version__}"},
                timeout=self._timeout,
                transport=transport,
            )
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        """Close the underlying connection pool. The client may be used again afterwards."""
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.aclose()

    # ------------------------------------------------------------------ core

    def path(self, *segments: str) -> str:
        """The URL path under this namespace, each segment percent-encoded."""
        return "/".join([self._prefix, *(_segment(s) for s in segments)])

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        timeouts: httpx.Timeout | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Send one request and return the decoded JSON body of a 2xx answer.

        Raises:
            StateManagerError: A subclass matching the non-2xx status code.
            ServerUnreachableError: No connection could be made.
            TransportError: The request failed on the network or the body was not JSON.
            InvalidURLError: The base URL is not `http(s)://host`.
        """
        if not self._url_is_valid:
            raise InvalidURLError(self.base_url)
        try:
            response = await self._send(
                method,
                path,
                json=body,
                headers=headers,
                timeout=timeouts if timeouts is not None else self._timeout,
            )
        except _NETWORK_ERRORS as exc:
            error: ExosphereError = network_error(exc, self.base_url, method, path)
            await self._close_if_useless(error)
            raise error from None
        if not response.is_success:
            detail, code = _detail(response), _code(response)
            error = error_for_status(
                response.status_code, detail, method=method, path=path, code=code, url=self.base_url
            )
            await self._close_if_useless(error)
            raise error
        return _decode(response, self.base_url, method, path)

    async def _send(self, method: str, path: str, **options: Any) -> httpx.Response:
        """`client.request(...)`, counted in `_in_flight` while it runs."""
        client = self._get_client()
        self._in_flight += 1
        try:
            return await client.request(method, path, **options)
        finally:
            self._in_flight -= 1

    async def _close_if_useless(self, error: ExosphereError) -> None:
        """Close the pool after a refused connection or key, unless other calls still use it."""
        if isinstance(error, ServerUnreachableError | AuthenticationError) and self._in_flight == 0:
            await self.aclose()

    async def request_object(
        self, method: str, path: str, *, body: Any = None, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Like `request`, for endpoints that answer with a JSON object."""
        data = await self.request(method, path, body=body, headers=headers)
        if not isinstance(data, dict):
            raise TransportError(f"{method} {path}: expected a JSON object, got {type(data).__name__}")
        return data

    # ------------------------------------------------------------------ runtime endpoints

    async def register_nodes(
        self, runtime_name: str, runtime_namespace: str, nodes: list[dict[str, Any]]
    ) -> None:
        """`PUT /nodes/`: register (or re-register) this runtime's nodes."""
        body = {"runtime_name": runtime_name, "runtime_namespace": runtime_namespace, "nodes": nodes}
        await self.request("PUT", self.path("nodes") + "/", body=body)

    async def enqueue(self, nodes: list[str], batch_size: int, wait_ms: int) -> list[dict[str, Any]]:
        """`POST /states/enqueue`: claim up to `batch_size` states, waiting up to `wait_ms`."""
        body = {"nodes": nodes, "batch_size": batch_size, "wait_ms": wait_ms}
        # The server may hold a long-poll for up to wait_ms: the read timeout must outlast it.
        read = wait_ms / 1000 + (self._timeout.read or DEFAULT_TIMEOUT)
        timeouts = httpx.Timeout(
            self._timeout.connect, read=read, write=self._timeout.write, pool=self._timeout.pool
        )
        data = await self.request("POST", self.path("states", "enqueue"), body=body, timeouts=timeouts)
        states = data.get("states") if isinstance(data, dict) else None
        if not isinstance(states, list):
            raise TransportError("POST states/enqueue: the answer has no 'states' list")
        return [s for s in states if isinstance(s, dict)]

    async def get_secrets(self, state_id: str, *, claim_token: str | None = None) -> dict[str, Any]:
        """`GET /state/{id}/secrets`: the secrets of the state's graph."""
        path = self.path("state", state_id, "secrets")
        data = await self.request_object("GET", path, headers=_claim_headers(claim_token))
        secrets = data.get("secrets")
        if not isinstance(secrets, dict):
            raise TransportError("GET secrets: the answer has no 'secrets' object")
        return secrets

    async def executed(
        self, state_id: str, outputs: list[dict[str, Any]], *, claim_token: str | None = None
    ) -> dict[str, Any]:
        """`POST /state/{id}/executed`."""
        return await self._state_call(state_id, "executed", {"outputs": outputs}, claim_token)

    async def errored(
        self,
        state_id: str,
        error: str,
        *,
        claim_token: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """`POST /state/{id}/errored`; an error longer than `MAX_ERROR_BYTES` is truncated.
        `details` (the exception's type, traceback, log lines) go along when given."""
        body: dict[str, Any] = {"error": cap_error(error)}
        if details is not None:
            body["details"] = details
        return await self._state_call(state_id, "errored", body, claim_token)

    async def prune(
        self, state_id: str, data: dict[str, Any], *, claim_token: str | None = None
    ) -> dict[str, Any]:
        """`POST /state/{id}/prune`."""
        return await self._state_call(state_id, "prune", {"data": data}, claim_token)

    async def requeue_after(
        self, state_id: str, delay_ms: int, *, claim_token: str | None = None
    ) -> dict[str, Any]:
        """`POST /state/{id}/re-enqueue-after`."""
        return await self._state_call(state_id, "re-enqueue-after", {"enqueue_after": delay_ms}, claim_token)

    async def heartbeat(self, state_id: str, *, claim_token: str | None = None) -> dict[str, Any]:
        """`POST /state/{id}/heartbeat`: extend the lease of a claimed state."""
        return await self._state_call(state_id, "heartbeat", {}, claim_token)

    async def _state_call(
        self, state_id: str, action: str, body: dict[str, Any], claim_token: str | None
    ) -> dict[str, Any]:
        path = self.path("state", state_id, action)
        return await self.request_object("POST", path, body=body, headers=_claim_headers(claim_token))

    # ------------------------------------------------------------------ graph and run endpoints

    async def trigger(self, graph_name: str, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /graph/{g}/trigger`."""
        return await self.request_object("POST", self.path("graph", graph_name, "trigger"), body=body)

    async def upsert_graph(self, graph_name: str, body: dict[str, Any]) -> dict[str, Any]:
        """`PUT /graph/{g}`."""
        return await self.request_object("PUT", self.path("graph", graph_name), body=body)

    async def get_graph(self, graph_name: str) -> dict[str, Any]:
        """`GET /graph/{g}`."""
        return await self.request_object("GET", self.path("graph", graph_name))

    async def list_runs(self, page: int, size: int) -> dict[str, Any]:
        """`GET /runs/{page}/{size}`."""
        return await self.request_object("GET", self.path("runs", str(page), str(size)))

    async def get_run_graph(self, run_id: str) -> dict[str, Any]:
        """`GET /states/run/{run_id}/graph`."""
        return await self.request_object("GET", self.path("states", "run", run_id, "graph"))

    async def list_states(self, run_id: str | None) -> dict[str, Any]:
        """`GET /states/` or `GET /states/run/{run_id}`."""
        path = self.path("states") + "/" if run_id is None else self.path("states", "run", run_id)
        return await self.request_object("GET", path)


def default_transport(base_url: str | None = None) -> httpx.AsyncBaseTransport:
    """A new transport for one client: aiohttp's when `httpx-aiohttp` is installed, else httpx's.

    Both keep connections alive (a pool of up to 100; idle ones kept `_KEEPALIVE_SECONDS`), verify
    TLS like httpx (certifi, or `SSL_CERT_FILE` / `SSL_CERT_DIR`), and, like httpx, honour the
    environment's `HTTP_PROXY` / `HTTPS_PROXY` / `NO_PROXY` for `base_url`: read once here, not
    on every request (aiohttp's own `trust_env` looks them up per request, which doubled the
    client's CPU per request in our measurement).
    """
    limits = httpx.Limits(max_connections=_MAX_CONNECTIONS, keepalive_expiry=_KEEPALIVE_SECONDS)
    if AiohttpTransport is None:
        return httpx.AsyncHTTPTransport(limits=limits)
    proxy = _environment_proxy(base_url) if base_url else None
    return AiohttpTransport(limits=limits, proxy=httpx.Proxy(proxy) if proxy else None)


def network_error(exc: Exception, base_url: str, method: str, path: str) -> TransportError:
    """The one-line `TransportError` (or `ServerUnreachableError`) for a request that got no answer.

    `exc` is what httpx (or aiohttp under it) raised; raise the result `from None`.
    """
    chain = _chain(exc)
    aiohttp_errors = [e for e in chain if aiohttp is not None and isinstance(e, aiohttp.ClientError)]
    failure = aiohttp_errors[0] if aiohttp_errors else exc
    if isinstance(failure, _CONNECT_FAILURES):
        return ServerUnreachableError(base_url, _unreachable_reason(failure, chain, base_url))
    if isinstance(failure, httpx.TimeoutException | TimeoutError):
        return TransportError(f"the state manager at {base_url} did not answer in time ({method} {path})")
    return TransportError(
        f"{method} {path} to the state manager at {base_url} failed: {_one_line(failure, with_type=True)}"
    )


def _unreachable_reason(failure: Exception, chain: list[BaseException], base_url: str) -> str:
    """Why no connection could be made: `connection refused`, `cannot resolve the host name h`, ..."""
    for cause in chain:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return f"cannot resolve the host name {httpx.URL(base_url).host}"
        if isinstance(cause, ssl.SSLError | ssl.CertificateError):
            return f"TLS failed: {_one_line(cause)}"
    if isinstance(failure, httpx.TimeoutException | TimeoutError):
        return "timed out while connecting"
    for cause in reversed(chain):  # e.g. "network is unreachable"
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
    return _one_line(failure)


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc`, then what caused it (`__cause__`, else `__context__`), and so on."""
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    return chain


def _one_line(exc: BaseException, *, with_type: bool = False) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if with_type else text


def _is_http_url(url: str) -> bool:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.host)


def _environment_proxy(base_url: str) -> str | None:
    """The proxy the environment names for `base_url`, or None (none set, or `NO_PROXY` matches)."""
    url = httpx.URL(base_url)
    proxy = urllib.request.getproxies().get(url.scheme)
    if not proxy or urllib.request.proxy_bypass(url.host):
        return None
    return proxy


def _release_elsewhere(client: httpx.AsyncClient, loop: asyncio.AbstractEventLoop) -> None:
    """Let go of a client bound to another event loop without awaiting anything in this one.

    A loop still running (in another thread) closes it itself. For a closed loop (e.g. after
    `asyncio.run` returned) the aiohttp session is marked closed and its pool emptied, so that
    it does not complain about being unclosed when it is collected; its sockets are closed by
    the garbage collector, as httpx's own transport leaves them. A loop that is neither may run
    again: the client is left to it.
    """
    if loop.is_running():
        asyncio.run_coroutine_threadsafe(client.aclose(), loop)
        return
    if not loop.is_closed():
        return
    transport = getattr(client, "_transport", None)
    session = getattr(transport, "client", None)
    if aiohttp is None or not isinstance(session, aiohttp.ClientSession):
        return
    connector = session.connector
    session.detach()
    if connector is not None:
        # With its loop closed, the connector only marks itself closed and answers a no-op
        # awaitable; run that to its end here so that it is not reported as never awaited.
        with contextlib.suppress(Exception):
            for _ in connector.close().__await__():
                break


def cap_error(error: str) -> str:
    """The error text, truncated (with a marker) to at most `MAX_ERROR_BYTES` UTF-8 bytes.

    Characters UTF-8 cannot encode (lone surrogates) become `?`, so that any text can be sent.
    """
    data = error.encode(errors="replace")
    if len(data) <= MAX_ERROR_BYTES:
        return data.decode()
    marker = f" [... truncated by exospherehost: the error was {len(data)} bytes]"
    keep = MAX_ERROR_BYTES - len(marker.encode())
    return data[:keep].decode(errors="ignore") + marker


def _claim_headers(claim_token: str | None) -> dict[str, str] | None:
    return None if claim_token is None else {CLAIM_TOKEN_HEADER: claim_token}


def _segment(value: str) -> str:
    return quote(value, safe="")


def _detail(response: httpx.Response) -> Any:
    """The `detail` of an error answer, or its text when it is not the usual JSON object."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:_MAX_DETAIL_CHARS] or response.reason_phrase
    if isinstance(data, dict) and "detail" in data:
        return data["detail"]
    return data


def _code(response: httpx.Response) -> str | None:
    """The machine-readable `code` of an error answer (sent next to `detail`), or None."""
    try:
        data = response.json()
    except ValueError:
        return None
    code = data.get("code") if isinstance(data, dict) else None
    return code if isinstance(code, str) else None


def _decode(response: httpx.Response, base_url: str, method: str, path: str) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        raise TransportError(
            f"the state manager at {base_url} answered {method} {path} with a body that is not JSON"
        ) from None
