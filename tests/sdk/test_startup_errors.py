"""A wrong key, a server that is down, a bad URL: what the user sees (issue 16, item 7).

Each is one typed error whose message is one line naming the server's address; the traceback
shows no chained exception from inside httpx / aiohttp; no "Unclosed client session" /
"Unclosed connector" (`ResourceWarning`) follows, neither when the error happens nor at exit;
and a `Runtime.start()` that cannot register prints one line on stderr and exits with status 1.

"Down" is a free loopback port with nothing listening; "wrong key" is a real state manager
(`tests/support/live_server.py`) asked with another key.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import textwrap
import traceback
import warnings
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from exospherehost import (
    AuthenticationError,
    BaseNode,
    ExosphereError,
    InvalidURLError,
    Runtime,
    ServerUnreachableError,
    StateManager,
    TransportError,
)
from tests.support.live_server import LiveServer, free_port, start_server

NAMESPACE = "startup-errors"
SCRIPT_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


def nothing_listening() -> str:
    return f"http://127.0.0.1:{free_port()}/"


class Greet(BaseNode):
    class Inputs(BaseModel):
        name: str

    class Outputs(BaseModel):
        message: str

    async def execute(self) -> Outputs:
        return self.Outputs(message=f"hello {self.inputs.name}")


# ---------------------------------------------------------------------------------- in process


def fail_and_collect(call: Callable[[], Coroutine[Any, Any, Any]]) -> tuple[ExosphereError, str, list[str]]:
    """Run `call()` in a fresh event loop (as a script's `asyncio.run` does), expecting an SDK
    error; return it, its printed traceback, and every warning raised until everything the call
    created has been garbage-collected."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            asyncio.run(call())
        except ExosphereError as exc:
            error = exc
        else:
            pytest.fail("no error raised")
        printed = "".join(traceback.format_exception(error))
        error.__traceback__ = None  # its frames hold the client: let it go before collecting
        gc.collect()
    return error, printed, [f"{w.category.__name__}: {w.message}" for w in seen]


def assert_one_clean_line(error: ExosphereError, printed: str, seen_warnings: list[str]) -> None:
    assert "\n" not in str(error)
    assert "direct cause" not in printed and "During handling" not in printed
    assert "aiohttp" not in printed and "httpx" not in printed, printed
    assert seen_warnings == []


def test_a_server_that_is_down_is_one_line_naming_the_address() -> None:
    url = nothing_listening()

    error, printed, seen = fail_and_collect(lambda: StateManager(NAMESPACE, url, "k").get_graph("g"))

    assert type(error) is ServerUnreachableError
    assert isinstance(error, TransportError)
    assert str(error) == f"cannot reach the state manager at {url}: connection refused"
    assert (error.url, error.reason) == (url, "connection refused")
    assert_one_clean_line(error, printed, seen)


def test_a_host_name_that_does_not_resolve_is_one_line_naming_it() -> None:
    url = "http://exosphere-nowhere.invalid:8000"

    error, printed, seen = fail_and_collect(lambda: StateManager(NAMESPACE, url, "k").list_runs())

    assert type(error) is ServerUnreachableError
    assert str(error).startswith(f"cannot reach the state manager at {url}: ")
    assert "cannot resolve the host name exosphere-nowhere.invalid" in str(error)
    assert_one_clean_line(error, printed, seen)


@pytest.mark.parametrize("url", ["localhost:8000", "ftp://example.com", "http://"])
def test_a_url_that_is_not_http_is_one_line_naming_it(url: str) -> None:
    error, printed, seen = fail_and_collect(lambda: StateManager(NAMESPACE, url, "k").trigger("g"))

    assert type(error) is InvalidURLError
    assert isinstance(error, ValueError)  # a mistake in the arguments, as documented
    assert str(error) == f"the state manager URL {url!r} is not an http:// or https:// URL with a host"
    assert_one_clean_line(error, printed, seen)


def test_a_wrong_key_is_one_line_naming_the_address(live: LiveServer) -> None:
    error, printed, seen = fail_and_collect(
        lambda: StateManager(NAMESPACE, live.base_url, "wrong-key").get_graph("g")
    )

    assert type(error) is AuthenticationError
    assert error.status_code == 401
    assert str(error).startswith(f"the state manager at {live.base_url} rejected the API key: 401 (GET ")
    assert_one_clean_line(error, printed, seen)


@pytest.mark.parametrize("problem", ["down", "wrong key", "bad url"])
def test_a_runtime_that_cannot_register_leaves_nothing_open(live: LiveServer, problem: str) -> None:
    url, key = {
        "down": (nothing_listening(), "k"),
        "wrong key": (live.base_url, "wrong-key"),
        "bad url": ("localhost:8000", "k"),
    }[problem]

    def run() -> Coroutine[Any, Any, None]:
        return Runtime(NAMESPACE, "rt", [Greet], url, key, heartbeat_interval=None).run()

    error, printed, seen = fail_and_collect(run)

    assert isinstance(error, ServerUnreachableError | AuthenticationError | InvalidURLError)
    assert_one_clean_line(error, printed, seen)


async def test_a_mocked_refusal_is_a_server_unreachable_error_and_a_timeout_is_not() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("", request=request)

    async with StateManager(NAMESPACE, "http://sm.test", "k", transport=httpx.MockTransport(refuse)) as sm:
        with pytest.raises(ServerUnreachableError) as refused:
            await sm.get_graph("g")
    async with StateManager(NAMESPACE, "http://sm.test", "k", transport=httpx.MockTransport(hang)) as sm:
        with pytest.raises(TransportError) as timed_out:
            await sm.get_graph("g")

    assert str(refused.value) == "cannot reach the state manager at http://sm.test: Connection refused"
    assert isinstance(refused.value.__context__, httpx.ConnectError)  # kept, not printed
    assert type(timed_out.value) is TransportError
    assert str(timed_out.value) == (
        f"the state manager at http://sm.test did not answer in time (GET /v0/namespace/{NAMESPACE}/graph/g)"
    )


async def test_a_failure_does_not_close_the_connections_of_calls_still_in_flight() -> None:
    release = asyncio.Event()

    async def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/slow"):
            await release.wait()
            return httpx.Response(200, json={"ok": True})
        return httpx.Response(401, json={"detail": "Invalid API key"})

    sm = StateManager(NAMESPACE, "http://sm.test", "k", transport=httpx.MockTransport(answer))
    slow = asyncio.create_task(sm.get_graph("slow"))
    await asyncio.sleep(0.01)
    with pytest.raises(AuthenticationError):
        await sm.get_graph("g")
    client = sm._api._client

    assert client is not None and not client.is_closed  # the slow call still uses it
    release.set()
    assert await slow == {"ok": True}
    await sm.aclose()


# ---------------------------------------------------------------------------------- as a script

RUNTIME_SCRIPT = """
import sys

from pydantic import BaseModel

from exospherehost import BaseNode, Runtime


class Greet(BaseNode):
    class Inputs(BaseModel):
        name: str

    class Outputs(BaseModel):
        message: str

    async def execute(self):
        return self.Outputs(message="hello " + self.inputs.name)


url, key = sys.argv[1:3]
Runtime(namespace="demo", name="worker", nodes=[Greet], state_manager_uri=url, key=key).start()
print("start() returned")
"""

STATE_MANAGER_SCRIPT = """
import asyncio
import sys

from exospherehost import StateManager

sm = StateManager("demo", sys.argv[1], sys.argv[2])
asyncio.run(sm.list_runs())
"""


def run_script(tmp_path: Path, source: str, url: str, key: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    return subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", str(script), url, key],
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT,
    )


def assert_nothing_unclosed(stderr: str) -> None:
    assert "Unclosed" not in stderr and "ResourceWarning" not in stderr, stderr
    assert "unclosed" not in stderr, stderr


def test_a_runtime_script_with_the_server_down_prints_one_line_and_exits_1(tmp_path: Path) -> None:
    url = nothing_listening()

    done = run_script(tmp_path, RUNTIME_SCRIPT, url, "k")

    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].endswith(
        f"runtime demo/worker could not start: cannot reach the state manager at {url}: connection refused"
    )
    assert "Traceback" not in done.stderr
    assert_nothing_unclosed(done.stderr)
    assert "start() returned" not in done.stdout


def test_a_runtime_script_with_a_wrong_key_prints_one_line_and_exits_1(
    tmp_path: Path, live: LiveServer
) -> None:
    done = run_script(tmp_path, RUNTIME_SCRIPT, live.base_url, "wrong-key")

    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert (
        f"runtime demo/worker could not start: the state manager at {live.base_url} rejected the API key"
        in lines[0]
    )
    assert "Traceback" not in done.stderr
    assert_nothing_unclosed(done.stderr)


@pytest.mark.parametrize("problem", ["down", "wrong key"])
def test_a_state_manager_script_shows_its_own_frames_and_the_one_line(
    tmp_path: Path, live: LiveServer, problem: str
) -> None:
    url, key = (nothing_listening(), "k") if problem == "down" else (live.base_url, "wrong-key")

    done = run_script(tmp_path, STATE_MANAGER_SCRIPT, url, key)

    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    if problem == "down":
        assert last == (
            "exospherehost.errors.ServerUnreachableError: "
            f"cannot reach the state manager at {url}: connection refused"
        )
    else:
        assert last.startswith(
            f"exospherehost.errors.AuthenticationError: the state manager at {url} rejected the API key"
        )
    assert done.stderr.count("Traceback") == 1, done.stderr  # no chained exception
    assert "aiohttp" not in done.stderr and "httpx" not in done.stderr, done.stderr
    assert_nothing_unclosed(done.stderr)
