"""A body over MAX_REQUEST_BYTES is a 413 that every common client actually receives (issue 16).

Answering 413 and closing while the client is still sending makes the kernel reset the
connection (unread data in the server's socket), and a client that sends its whole body before
reading (urllib, http.client, httpx) then sees "connection reset by peer" or "broken pipe", never
the 413: a worker that cannot tell "too large" from a network fault retries forever. So the server
reads and discards the rest of the body, within a bound, before it closes.

These tests run a real server (uvicorn, uvloop, httptools) on 127.0.0.1. The limit is 4 MiB and
the bodies 3x that: a few MiB fit in the loopback socket buffers, and a body that fits there
reaches the server's kernel before the close whatever the server does, which would hide the reset.
"""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest

from state_manager.api.guard import DRAIN_SECONDS
from tests.support.live_server import LiveServer, start_server

pytestmark = pytest.mark.e2e

LIMIT = 4 * 1024 * 1024
BODY_SIZE = 3 * LIMIT
PATH = "/v0/namespace/ns/state/000000000000000000000000/executed"
CHUNK = 64 * 1024


def _body(size: int = BODY_SIZE) -> bytes:
    """A JSON `executed` body of exactly `size` bytes (never parsed: it is refused first)."""
    head, tail = b'{"outputs": [{"x": "', b'"}]}'
    return head + b"a" * (size - len(head) - len(tail)) + tail


def _chunks(body: bytes) -> Iterator[bytes]:
    for start in range(0, len(body), CHUNK):
        yield body[start : start + CHUNK]


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    live = start_server(MAX_REQUEST_BYTES=LIMIT)
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def body() -> bytes:
    return _body()


def _headers(server: LiveServer) -> dict[str, str]:
    return {**server.headers, "content-type": "application/json"}


def _assert_refused(status: int, payload: bytes) -> None:
    assert status == 413, payload[:300]
    detail = json.loads(payload)["detail"]
    assert f"limit of {LIMIT} bytes" in detail
    assert "MAX_REQUEST_BYTES" in detail


def _assert_healthy(server: LiveServer) -> None:
    """The server answers a new request at once (it is not busy reading a body forever)."""
    started = time.monotonic()
    answer = httpx.get(f"{server.base_url}/health", timeout=5.0)
    assert answer.status_code == 200
    assert time.monotonic() - started < 1.0
    assert server.is_running()


# ------------------------------------------------------------------ each client gets the 413


def test_urllib_with_a_content_length(server: LiveServer, body: bytes) -> None:
    request = urllib.request.Request(
        server.base_url + PATH, data=body, method="POST", headers=_headers(server)
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    with refused.value:
        _assert_refused(refused.value.code, refused.value.read())


def test_http_client_with_chunked_encoding(server: LiveServer, body: bytes) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("POST", PATH, body=_chunks(body), headers=_headers(server), encode_chunked=True)
        response = connection.getresponse()
        _assert_refused(response.status, response.read())
    finally:
        connection.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_httpx(server: LiveServer, body: bytes, chunked: bool) -> None:
    content = _chunks(body) if chunked else body
    with httpx.Client(timeout=30.0) as client:
        answer = client.post(server.base_url + PATH, content=content, headers=_headers(server))
    _assert_refused(answer.status_code, answer.content)


async def test_aiohttp(server: LiveServer, body: bytes) -> None:
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        data = io.BytesIO(body)  # sized: sent with a Content-Length
        async with session.post(server.base_url + PATH, data=data, headers=_headers(server)) as answer:
            _assert_refused(answer.status, await answer.read())


@pytest.mark.parametrize("expect", [True, False], ids=["expect-100-continue", "no-expect"])
def test_curl(server: LiveServer, body: bytes, tmp_path: Path, expect: bool) -> None:
    """curl asks `Expect: 100-continue` for a large body by default; `-H 'Expect:'` sends at once."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    body_file = tmp_path / "body.json"
    body_file.write_bytes(body)
    command = [curl, "-sS", "-o", "-", "-w", "%{http_code}", "-X", "POST"]
    for name, value in _headers(server).items():
        command += ["-H", f"{name}: {value}"]
    if not expect:
        command += ["-H", "Expect:"]
    command += ["--data-binary", f"@{body_file}", server.base_url + PATH]

    done = subprocess.run(command, capture_output=True, timeout=30, check=False)

    assert done.returncode == 0, done.stderr.decode(errors="replace")
    _assert_refused(int(done.stdout[-3:]), done.stdout[:-3])


# ------------------------------------------------------------------ the drain is bounded


def _raw_post(server: LiveServer, framing: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    head = f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: {server.api_key}\r\n{framing}\r\n"
    sock.sendall(head.encode())
    return sock


def _read_until_closed(sock: socket.socket) -> bytes:
    """What the server sends on `sock` until it closes (or resets) the connection."""
    received = b""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not data:
            return received
        received += data


def _send_until_refused(sock: socket.socket, total: int, chunk: bytes) -> int:
    """Send up to `total` bytes of `chunk`s; how many went out before the server stopped taking them."""
    sent = 0
    try:
        while sent < total:
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:  # reset, broken pipe, or a send timeout: the server stopped reading
        pass
    return sent


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_far_over_the_limit_is_not_read_to_its_end(server: LiveServer, chunked: bool) -> None:
    total = 50 * LIMIT
    data = b"a" * CHUNK
    framing = "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {total}\r\n"
    started = time.monotonic()
    with _raw_post(server, framing) as sock:
        sent = _send_until_refused(sock, total, b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)

    assert sent < total // 2, "the server read (and threw away) far more than its bound"
    assert time.monotonic() - started < 10
    _assert_healthy(server)


def test_the_413_comes_before_the_body_and_a_stalled_body_is_given_up(server: LiveServer) -> None:
    """With a Content-Length over the limit the answer is sent at once, and a client that then
    stops sending does not hold the connection for more than a few seconds."""
    with _raw_post(server, f"Content-Length: {2 * LIMIT}\r\n") as sock:
        sock.sendall(b"a" * CHUNK)
        sock.settimeout(2.0)
        first = sock.recv(65536)  # before the rest of the body is sent
        assert first.startswith(b"HTTP/1.1 413")
        sock.settimeout(15.0)
        started = time.monotonic()
        rest = _read_until_closed(sock)  # the server closes once it stops waiting for the body
        waited = time.monotonic() - started

    head, _, payload = (first + rest).partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    _assert_refused(413, payload)
    assert DRAIN_SECONDS - 1 < waited < DRAIN_SECONDS + 5
    _assert_healthy(server)


def test_a_normal_request_after_a_refused_one_is_served(server: LiveServer, body: bytes) -> None:
    """The 413 closes its connection (`connection: close`); the client's next request opens a new one."""
    with httpx.Client(base_url=server.base_url, headers=_headers(server), timeout=30.0) as client:
        refused = client.post(PATH, content=body)
        _assert_refused(refused.status_code, refused.content)
        again = client.post(PATH, content=b'{"outputs": [{"x": "a"}]}')
    assert again.status_code not in (413, 500)
    _assert_healthy(server)


async def test_many_refused_uploads_at_once(server: LiveServer, body: bytes) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, headers=_headers(server), timeout=30.0) as client:
        answers = await asyncio.gather(*(client.post(PATH, content=body) for _ in range(4)))
    for answer in answers:
        _assert_refused(answer.status_code, answer.content)
    _assert_healthy(server)
