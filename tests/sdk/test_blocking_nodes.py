"""Nodes that block: `def execute` runs in a worker thread, heartbeats do not depend on the event
loop, and a node that blocks the loop is named in a warning.

Every wait is on an event or a condition, with a generous hang guard; no assertion bounds how
long something takes.
"""

from __future__ import annotations

import asyncio
import logging
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from exospherehost import BaseNode
from exospherehost.runtime import BatchResult
from exospherehost.testing import run_node

from .conftest import RuntimeFactory
from .fake_server import FakeServer
from .nodes import Greet
from .typecheck import mypy_error_lines

HANG_GUARD = 10.0
"""Seconds after which a wait is taken for a hang: a guard, not a claim about speed."""


async def wait_until(condition: object, timeout: float = HANG_GUARD) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


def block_until(condition: object, what: str) -> None:
    """Block the calling thread (the event loop, for an async node) until `condition()`."""
    assert callable(condition)
    deadline = time.monotonic() + HANG_GUARD
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"blocked in vain: {what} never happened")
        time.sleep(0.01)


class WhereAmI(BaseNode):
    """A plain `def execute`: returns the name of the thread it ran on."""

    class Outputs(BaseModel):
        thread: str

    def execute(self) -> Outputs:
        return self.Outputs(thread=threading.current_thread().name)


class ThreadGate:
    """Holds `def execute` nodes in their threads and counts them."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.threads: set[str] = set()
        self.finished = 0

    def node(self) -> type[BaseNode]:
        gate = self

        class Blocking(BaseNode):
            class Outputs(BaseModel):
                done: str

            def execute(self) -> Outputs:
                with gate.lock:
                    gate.running += 1
                    gate.peak = max(gate.peak, gate.running)
                    gate.threads.add(threading.current_thread().name)
                try:
                    if not gate.release.wait(HANG_GUARD):
                        raise AssertionError("never released")
                finally:
                    with gate.lock:
                        gate.running -= 1
                        gate.finished += 1
                return self.Outputs(done="yes")

        return Blocking


# ---------------------------------------------------------------------- def execute


async def test_a_def_execute_node_runs_in_a_worker_thread_and_its_outputs_are_reported(
    server: FakeServer, make_runtime: RuntimeFactory
) -> None:
    state_id = server.add_state("WhereAmI")

    result = await make_runtime(WhereAmI).run_once()

    assert result == BatchResult(claimed=1, executed=1)
    [report] = server.routes("/executed")
    assert report.route == f"state/{state_id}/executed"
    [output] = report.body["outputs"]
    assert output["thread"] != threading.current_thread().name
    assert output["thread"].startswith("exosphere-node-")


async def test_a_blocked_def_execute_node_holds_up_neither_the_loop_nor_other_nodes(
    server: FakeServer, make_runtime: RuntimeFactory
) -> None:
    gate = ThreadGate()
    blocking = gate.node()
    server.add_state(blocking.__name__, lease=True)
    runtime = make_runtime(blocking, Greet, workers=2, heartbeat_interval=0.02)

    async with runtime:
        await wait_until(lambda: gate.running == 1)
        greet = server.add_state("Greet", {"name": "Ada"})  # triggered after the blocking one
        await wait_until(lambda: len(server.routes("/executed")) == 1)
        first_done = server.routes("/executed")[0].route
        await wait_until(lambda: len(server.routes("/heartbeat")) >= 1)  # its lease is kept meanwhile
        gate.release.set()
        await wait_until(lambda: len(server.routes("/executed")) == 2)

    assert first_done == f"state/{greet}/executed"
    assert gate.finished == 1


async def test_def_execute_nodes_run_on_a_pool_bounded_by_workers(
    server: FakeServer, make_runtime: RuntimeFactory
) -> None:
    gate = ThreadGate()
    blocking = gate.node()
    for _ in range(4):
        server.add_state(blocking.__name__)
    runtime = make_runtime(blocking, workers=2)

    async with runtime:
        await wait_until(lambda: gate.running == 2)
        gate.release.set()
        await wait_until(lambda: len(server.routes("/executed")) == 4)

    assert gate.peak == 2
    assert len(gate.threads) <= 2  # the threads are reused, never more than `workers`
    assert gate.finished == 4


NODES_AS_USERS_WRITE_THEM = textwrap.dedent(
    """
    import time

    from pydantic import BaseModel

    from exospherehost import BaseNode, Runtime


    class Blocking(BaseNode):
        class Outputs(BaseModel):
            done: str

        def execute(self) -> Outputs:
            time.sleep(0.1)
            return self.Outputs(done="yes")


    class Awaiting(BaseNode):
        class Outputs(BaseModel):
            done: str

        async def execute(self) -> list[Outputs]:
            return [self.Outputs(done="yes")]


    class Wrong(BaseNode):
        def execute(self) -> str:
            return "not outputs"


    Runtime("ns", "rt", [Blocking, Awaiting], "http://sm", "key", blocked_loop_warning=0.5)
    """
)


@pytest.mark.timeout(300)
def test_mypy_accepts_def_and_async_def_execute(tmp_path: Path) -> None:
    lines, output = mypy_error_lines(NODES_AS_USERS_WRITE_THEM, tmp_path)

    wrong = next(
        i for i, line in enumerate(NODES_AS_USERS_WRITE_THEM.splitlines(), 1) if "not outputs" in line
    )
    assert lines == [wrong - 1], output  # only the override that returns no Outputs


async def test_run_node_runs_a_def_execute_node_too() -> None:
    [output] = await run_node(WhereAmI, {})

    assert output["thread"] != threading.current_thread().name


# ---------------------------------------------------------------------- heartbeats


class LoopBlocker:
    """An `async def execute` that blocks the event loop (as `time.sleep` or CPU work would)
    until `until()` holds, noting when it started and ended."""

    def __init__(self) -> None:
        self.until: object = lambda: True
        self.started = 0.0
        self.ended = 0.0

    def node(self) -> type[BaseNode]:
        blocker = self

        class BlocksTheLoop(BaseNode):
            class Outputs(BaseModel):
                done: str

            async def execute(self) -> Outputs:
                blocker.started = time.monotonic()
                block_until(blocker.until, "the awaited condition")
                blocker.ended = time.monotonic()
                return self.Outputs(done="yes")

        return BlocksTheLoop


async def test_heartbeats_keep_coming_while_a_node_blocks_the_event_loop(
    server: FakeServer, make_runtime: RuntimeFactory
) -> None:
    """With a 300 ms lease the state needs a beat every 100 ms; the node blocks the loop until
    two beats have gone out, which only a heartbeat independent of the loop can send."""
    blocker = LoopBlocker()
    node = blocker.node()
    blocker.until = lambda: len(server.routes("/heartbeat")) >= 2
    state_id = server.add_state(node.__name__, claim_token="claim-1", lease_ms=300)
    server.heartbeat_lease_ms = 300
    runtime = make_runtime(node, heartbeat_interval=30.0, blocked_loop_warning=None)

    result = await runtime.run_once()

    assert result == BatchResult(claimed=1, executed=1)
    beats = server.routes("/heartbeat")
    assert all(b.route == f"state/{state_id}/heartbeat" for b in beats)
    assert sum(blocker.started <= b.at <= blocker.ended for b in beats) >= 2


def runtime_threads() -> list[str]:
    names = ("exosphere-heartbeats-", "exosphere-watchdog-")
    return sorted(t.name for t in threading.enumerate() if t.name.startswith(names))


async def test_the_heartbeat_thread_and_the_watchdog_stop_with_the_runtime(
    server: FakeServer, make_runtime: RuntimeFactory
) -> None:
    gate = ThreadGate()
    blocking = gate.node()
    server.add_state(blocking.__name__, lease=True)
    runtime = make_runtime(blocking, heartbeat_interval=0.02)
    before = runtime_threads()

    async with runtime:
        await wait_until(lambda: len(server.routes("/heartbeat")) >= 1)
        during = runtime_threads()
        gate.release.set()
        await wait_until(lambda: len(server.routes("/executed")) == 1)

    assert during == sorted([*before, "exosphere-heartbeats-test-runtime", "exosphere-watchdog-test-runtime"])
    assert runtime_threads() == before


async def test_heartbeat_interval_none_sends_no_heartbeats(
    server: FakeServer, make_runtime: RuntimeFactory
) -> None:
    gate = ThreadGate()
    blocking = gate.node()
    server.add_state(blocking.__name__, claim_token="claim-1", lease_ms=150)
    runtime = make_runtime(blocking, heartbeat_interval=None)

    async with runtime:
        await wait_until(lambda: gate.running == 1)
        assert not any(name.startswith("exosphere-heartbeats-") for name in runtime_threads())
        await asyncio.sleep(0.3)  # two lease lengths: a heartbeat would have been due
        gate.release.set()
        await wait_until(lambda: len(server.routes("/executed")) == 1)

    assert server.routes("/heartbeat") == []


async def test_a_cancelled_def_execute_node_keeps_its_worker_until_it_returns(
    server: FakeServer, make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The heartbeat thread hears the 409; the loop stops waiting for the node, logs one line,
    reports nothing, and frees the worker only when the thread (which cannot be interrupted)
    returns."""
    gate = ThreadGate()
    blocking = gate.node()
    state_id = server.add_state(blocking.__name__, claim_token="claim-1", lease_ms=60_000)
    server.fail("/heartbeat$", 409, detail="run cancelled", code="STATE_CANCELLED")
    runtime = make_runtime(blocking, heartbeat_interval=0.02)

    with caplog.at_level(logging.WARNING, logger="exospherehost"):
        batch = asyncio.create_task(runtime.run_once())
        await wait_until(lambda: any("cancelled" in r.getMessage() for r in caplog.records))
        await asyncio.sleep(0)
        assert not batch.done()  # the node's thread still runs: its worker is still taken
        gate.release.set()
        result = await asyncio.wait_for(batch, HANG_GUARD)

    assert result == BatchResult(claimed=1, unreported=1)
    assert [r.route for r in server.requests if r.route.startswith("state/")] == [
        f"state/{state_id}/heartbeat"
    ]
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert state_id in line and "its run was cancelled" in line and "cannot be interrupted" in line


# ---------------------------------------------------------------------- the blocked-loop warning


class Flag(logging.Handler):
    """Sets an event when a record whose message contains `text` is logged."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = threading.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.text in message:
            self.messages.append(message)
            self.seen.set()


@pytest.fixture
def blocked_loop_warnings() -> Iterator[Flag]:
    flag = Flag("blocked the event loop")
    package = logging.getLogger("exospherehost")
    package.addHandler(flag)
    try:
        yield flag
    finally:
        package.removeHandler(flag)


async def test_a_node_blocking_the_event_loop_is_named_once_per_episode(
    server: FakeServer, make_runtime: RuntimeFactory, blocked_loop_warnings: Flag
) -> None:
    blocker = LoopBlocker()
    node = blocker.node()
    warned_at: float | None = None

    def warned_then_blocked_a_while_longer() -> bool:
        """After the warning, stay blocked for three more thresholds: still one warning."""
        nonlocal warned_at
        if not blocked_loop_warnings.seen.is_set():
            return False
        warned_at = warned_at or time.monotonic()
        return time.monotonic() - warned_at > 0.9

    blocker.until = warned_then_blocked_a_while_longer
    state_id = server.add_state(node.__name__)
    runtime = make_runtime(node, blocked_loop_warning=0.3)

    result = await runtime.run_once()

    assert result == BatchResult(claimed=1, executed=1)
    [warning] = blocked_loop_warnings.messages
    assert f"node {node.__name__} (state {state_id})" in warning
    assert "`def execute`" in warning and "asyncio.to_thread" in warning


async def test_each_blocking_episode_gets_its_own_warning(
    server: FakeServer, make_runtime: RuntimeFactory, blocked_loop_warnings: Flag
) -> None:
    blocker = LoopBlocker()
    node = blocker.node()
    blocker.until = lambda: len(blocked_loop_warnings.messages) >= episodes
    first, second = server.add_state(node.__name__), server.add_state(node.__name__)
    runtime = make_runtime(node, workers=1, blocked_loop_warning=0.3)

    episodes = 1
    assert await runtime.run_once() == BatchResult(claimed=1, executed=1)
    episodes = 2
    assert await runtime.run_once() == BatchResult(claimed=1, executed=1)

    assert [first in blocked_loop_warnings.messages[0], second in blocked_loop_warnings.messages[1]] == [
        True,
        True,
    ]
