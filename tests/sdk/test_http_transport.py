"""The SDK's HTTP transport against a real HTTP/1.1 server on a loopback port.

By default the SDK sends over aiohttp (`httpx-aiohttp`) under the httpx API: connections are kept
alive and reused, failures become `TransportError`, and a client survives a change of event loop.
"""

from __future__ import annotations

import asyncio
import gc
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from httpx_aiohttp import AiohttpTransport

from exospherehost import ServerUnreachableError, StateManager, TransportError
from exospherehost._http import ApiClient, default_transport

API_KEY = "transport-key"
NAMESPACE = "ns"


@dataclass
class Seen:
    peers: list[tuple[str, int]] = field(default_factory=list)
    api_keys: list[str | None] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    close_after_answer: bool = False
    delay: float = 0.0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless told otherwise
    seen: Seen

    def do_GET(self) -> None:
        self.seen.peers.append(self.client_address)
        self.seen.api_keys.append(self.headers.get("x-api-key"))
        self.seen.paths.append(self.path)
        if self.seen.delay:
            time.sleep(self.seen.delay)
        body = json.dumps({"validation_status": "VALID", "path": self.path}).encode()
        try:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            return
        if self.seen.close_after_answer:
            self.close_connection = True  # drop the connection without announcing it

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@dataclass
class Server:
    url: str
    seen: Seen


@pytest.fixture
def server() -> Iterator[Server]:
    seen = Seen()
    handler = type("BoundHandler", (Handler,), {"seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", seen)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_the_default_transport_is_aiohttp() -> None:
    assert isinstance(default_transport(), AiohttpTransport)


async def test_requests_reuse_one_kept_alive_connection(server: Server) -> None:
    async with StateManager(NAMESPACE, server.url, API_KEY) as sm:
        for _ in range(20):
            assert (await sm.get_graph("g"))["validation_status"] == "VALID"

    assert len(server.seen.peers) == 20
    assert len(set(server.seen.peers)) == 1
    assert server.seen.api_keys == [API_KEY] * 20


async def test_concurrent_requests_share_a_pool(server: Server) -> None:
    async with StateManager(NAMESPACE, server.url, API_KEY) as sm:
        for _ in range(3):
            await asyncio.gather(*(sm.get_graph("g") for _ in range(8)))

    assert len(server.seen.peers) == 24
    assert len(set(server.seen.peers)) <= 8  # later rounds reuse the first round's connections


async def test_a_connection_the_server_dropped_is_not_reused(server: Server) -> None:
    server.seen.close_after_answer = True
    async with StateManager(NAMESPACE, server.url, API_KEY) as sm:
        for _ in range(5):
            assert (await sm.get_graph("g"))["validation_status"] == "VALID"
            await asyncio.sleep(0.05)

    assert len(set(server.seen.peers)) == 5


# The socket of a connection left in a closed loop is closed by the garbage collector, with
# Python's own ResourceWarning, exactly as with httpx's transport; aiohttp's complaints about an
# unclosed session or connector (logged as errors outside tests) must not appear.
@pytest.mark.filterwarnings("ignore:unclosed (transport|<socket):ResourceWarning")
def test_one_manager_keeps_working_across_event_loops(server: Server) -> None:
    """A module-level StateManager used from two `asyncio.run` calls, over real connections:
    the second loop gets a new pool, and the first loop's pool is let go without complaint
    (warnings are errors in this suite; collecting makes any complaint happen here)."""
    sm = StateManager(NAMESPACE, server.url, API_KEY)

    first = asyncio.run(sm.get_graph("g"))
    second = asyncio.run(sm.get_graph("g"))
    asyncio.run(sm.aclose())
    gc.collect()

    assert first["validation_status"] == second["validation_status"] == "VALID"
    assert len(set(server.seen.peers)) == 2


async def test_a_refused_connection_is_a_transport_error() -> None:
    port = _closed_port()
    async with StateManager(NAMESPACE, f"http://127.0.0.1:{port}", API_KEY) as sm:
        with pytest.raises(
            ServerUnreachableError,
            match=f"^cannot reach the state manager at http://127.0.0.1:{port}: connection refused$",
        ):
            await sm.get_graph("g")


async def test_a_server_slower_than_the_timeout_is_a_transport_error(server: Server) -> None:
    server.seen.delay = 1.0
    api = ApiClient(base_url=server.url, api_key=API_KEY, namespace=NAMESPACE, timeout=0.2)
    try:
        with pytest.raises(
            TransportError, match=f"^the state manager at {server.url} did not answer in time"
        ):
            await api.get_graph("g")
    finally:
        await api.aclose()


async def test_an_explicit_transport_is_used_as_given() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"validation_status": "VALID"})

    async with StateManager(
        NAMESPACE, "http://nowhere.invalid", API_KEY, transport=httpx.MockTransport(answer)
    ) as sm:
        await sm.get_graph("g")

    assert [r.url.path for r in seen] == [f"/v0/namespace/{NAMESPACE}/graph/g"]


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_the_environment_proxy_is_used(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", server.url)  # the test server plays the proxy

    async with StateManager(NAMESPACE, "http://state-manager.invalid:8000", API_KEY) as sm:
        assert (await sm.get_graph("g"))["validation_status"] == "VALID"

    # A proxy receives the absolute URL in the request line.
    assert server.seen.paths == [f"http://state-manager.invalid:8000/v0/namespace/{NAMESPACE}/graph/g"]


async def test_no_proxy_bypasses_the_environment_proxy(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")

    async with StateManager(NAMESPACE, server.url, API_KEY) as sm:
        assert (await sm.get_graph("g"))["validation_status"] == "VALID"

    assert server.seen.paths == [f"/v0/namespace/{NAMESPACE}/graph/g"]
