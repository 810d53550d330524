"""What a runtime prints by default, and when it keeps quiet because the application set up logging.

pytest gives the root logger handlers of its own during a test; `unconfigured_logging()` takes
them away for the body of a test, so that the runtime sees a program that configured nothing,
and puts everything back afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from exospherehost import Runtime, ServerUnreachableError, StateManager, TransportError

from .conftest import RuntimeFactory
from .fake_server import API_KEY, BASE_URL, NAMESPACE, FakeServer
from .nodes import Fails, Greet

HANG_GUARD = 10.0
PACKAGE = "exospherehost"


async def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


@contextlib.contextmanager
def unconfigured_logging() -> Iterator[None]:
    """No handler on the root or the `exospherehost` logger; restored on exit."""
    root, package = logging.getLogger(), logging.getLogger(PACKAGE)
    saved = (list(root.handlers), root.level, list(package.handlers), package.level)
    for handler in saved[0]:
        root.removeHandler(handler)
    for handler in saved[2]:
        package.removeHandler(handler)
    try:
        yield
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in list(package.handlers):
            package.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        for handler in saved[2]:
            package.addHandler(handler)
        root.setLevel(saved[1])
        package.setLevel(saved[3])


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def serve_one(server: FakeServer, runtime: Runtime, node: str, inputs: dict[str, str]) -> str:
    """Serve until one state of `node` has been reported; return its id."""
    state_id = server.add_state(node, inputs)
    async with runtime:
        await wait_until(lambda: any(r.route.startswith(f"state/{state_id}/") for r in server.requests))
    return state_id


def connected_line(lines: list[str]) -> str:
    [line] = [line for line in lines if "connected to the state manager" in line]
    return line


async def test_with_nothing_configured_the_runtime_prints_what_it_does_on_stderr(
    server: FakeServer, make_runtime: RuntimeFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    with unconfigured_logging():
        greeted = await serve_one(server, make_runtime(Greet, Fails, workers=3), "Greet", {"name": "Ada"})
        failed = await serve_one(server, make_runtime(Greet, Fails), "Fails", {"message": "boom"})
        root_handlers = list(logging.getLogger().handlers)
        package_handlers = list(logging.getLogger(PACKAGE).handlers)
    lines = capsys.readouterr().err.splitlines()

    assert root_handlers == []  # never the root logger
    assert len(package_handlers) == 1  # one handler, not one per runtime
    connected = [line for line in lines if "connected to the state manager" in line]
    assert len(connected) == 2  # one per runtime, each printed once
    assert BASE_URL in connected[0] and NAMESPACE in connected[0]
    assert "Fails, Greet" in connected[0] and "3 workers" in connected[0]
    assert " INFO " in connected[0]
    [executed] = [line for line in lines if f"state {greeted} " in line]
    assert "(node Greet): executed in " in executed and " INFO " in executed
    [errored] = [line for line in lines if f"state {failed} " in line]
    assert "(node Fails): errored in " in errored and "boom" in errored and " WARNING " in errored


async def test_exosphere_log_level_sets_the_level_of_the_default_output(
    server: FakeServer,
    make_runtime: RuntimeFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EXOSPHERE_LOG_LEVEL", "warning")
    with unconfigured_logging():
        await serve_one(server, make_runtime(Greet, Fails), "Greet", {"name": "Ada"})
        failed = await serve_one(server, make_runtime(Greet, Fails), "Fails", {"message": "boom"})
    lines = capsys.readouterr().err.splitlines()

    assert not any("connected to the state manager" in line or "executed in" in line for line in lines)
    assert any(f"state {failed} (node Fails): errored" in line for line in lines)


async def test_an_application_that_configured_the_root_logger_keeps_control(
    server: FakeServer, make_runtime: RuntimeFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    collected = Collect()
    with unconfigured_logging():
        logging.getLogger().addHandler(collected)
        logging.getLogger().setLevel(logging.INFO)
        await serve_one(server, make_runtime(Greet), "Greet", {"name": "Ada"})
        package = logging.getLogger(PACKAGE)
        package_handlers, package_level = list(package.handlers), package.level

    assert package_handlers == []
    assert package_level == logging.NOTSET
    assert capsys.readouterr().err == ""
    connected_line(collected.messages)  # through the application's own handler, once


async def test_an_application_that_configured_the_exospherehost_logger_keeps_control(
    server: FakeServer, make_runtime: RuntimeFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    collected = Collect()
    with unconfigured_logging():
        package = logging.getLogger(PACKAGE)
        package.addHandler(collected)
        package.setLevel(logging.INFO)
        await serve_one(server, make_runtime(Greet), "Greet", {"name": "Ada"})
        package_handlers = list(package.handlers)

    assert package_handlers == [collected]
    assert capsys.readouterr().err == ""
    connected_line(collected.messages)


async def test_logging_configured_after_the_runtime_started_is_not_printed_twice(
    server: FakeServer, make_runtime: RuntimeFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    collected = Collect()
    with unconfigured_logging():
        await serve_one(server, make_runtime(Greet), "Greet", {"name": "Ada"})
        logging.getLogger().addHandler(collected)  # e.g. a late logging.basicConfig()
        later = await serve_one(server, make_runtime(Greet), "Greet", {"name": "Bob"})
    err = capsys.readouterr().err

    assert f"state {later} " not in err
    assert any(f"state {later} (node Greet): executed" in m for m in collected.messages)


async def test_a_runtime_that_cannot_connect_names_the_address_it_tried() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    runtime = Runtime(NAMESPACE, "rt", [Greet], BASE_URL, API_KEY, transport=httpx.MockTransport(refuse))

    with pytest.raises(TransportError) as caught:
        await runtime.run()

    assert str(caught.value) == f"cannot reach the state manager at {BASE_URL}: Connection refused"
    assert isinstance(caught.value, ServerUnreachableError)
    assert isinstance(caught.value.__context__, httpx.ConnectError)
    await runtime.shutdown()


async def test_a_failed_poll_and_a_state_manager_call_name_the_address(
    server: FakeServer, make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server.fail("states/enqueue", httpx.ConnectError("Connection refused"))
    runtime = make_runtime(Greet)

    with caplog.at_level(logging.WARNING, logger=PACKAGE):
        async with runtime:
            await wait_until(lambda: len(server.routes("states/enqueue")) >= 2)

    assert any(
        "claiming states failed" in r.getMessage()
        and f"cannot reach the state manager at {BASE_URL}: Connection refused" in r.getMessage()
        for r in caplog.records
    )

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    async with StateManager(NAMESPACE, BASE_URL, API_KEY, transport=httpx.MockTransport(refuse)) as sm:
        with pytest.raises(TransportError, match=f"^cannot reach the state manager at {BASE_URL}: "):
            await sm.trigger("g")
