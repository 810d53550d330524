"""The long-running `Runtime`: run/shutdown, async with, concurrency, heartbeats, polling."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from pydantic import BaseModel

from exospherehost import AuthenticationError, BaseNode, Runtime

from .conftest import RuntimeFactory
from .fake_server import PREFIX, FakeServer
from .nodes import Fails, Greet

HANG_GUARD = 10.0
"""Seconds after which a wait is taken for a hang: a guard, not a claim about speed."""


async def wait_until(condition: Callable[[], bool], timeout: float = HANG_GUARD) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


class Gate:
    """Lets a test hold nodes inside execute() and see how many are in there."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.running = 0
        self.peak = 0
        self.started = 0

    def node(self) -> type[BaseNode]:
        gate = self

        class Held(BaseNode):
            class Outputs(BaseModel):
                done: str

            async def execute(self) -> Outputs:
                gate.running += 1
                gate.started += 1
                gate.peak = max(gate.peak, gate.running)
                try:
                    await gate.release.wait()
                finally:
                    gate.running -= 1
                return self.Outputs(done="yes")

        return Held


async def test_runs_states_until_shutdown(server: FakeServer, make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(Greet, Fails)
    server.add_state("Fails", {"message": "boom"})
    server.add_state("Greet", {"name": "Ada"})
    task = asyncio.create_task(runtime.run())

    await wait_until(lambda: len(server.routes("/executed")) == 1 and len(server.routes("/errored")) == 1)
    server.add_state("Greet", {"name": "Bob"})
    await wait_until(lambda: len(server.routes("/executed")) == 2)
    await runtime.shutdown()

    await asyncio.wait_for(task, HANG_GUARD)
    assert server.routes("/executed")[1].body == {"outputs": [{"message": "hello Bob"}]}


async def test_async_with_runs_in_the_background(server: FakeServer, make_runtime: RuntimeFactory) -> None:
    server.add_state("Greet", {"name": "Ada"})

    async with make_runtime(Greet):
        await wait_until(lambda: len(server.routes("/executed")) == 1)

    requests_after_exit = len(server.requests)
    await asyncio.sleep(0.05)
    assert len(server.requests) == requests_after_exit


async def test_never_more_than_workers_nodes_and_never_claims_more_than_free_slots(
    server: FakeServer, make_runtime: RuntimeFactory
) -> None:
    gate = Gate()
    held = gate.node()
    for _ in range(5):
        server.add_state(held.__name__)
    runtime = make_runtime(held, workers=2, batch_size=10)
    task = asyncio.create_task(runtime.run())

    await wait_until(lambda: gate.running == 2)
    await asyncio.sleep(0.05)  # several poll intervals: nothing more may start
    assert gate.running == 2
    assert len(server.states) == 3  # the rest stays on the server, unclaimed
    gate.release.set()
    await wait_until(lambda: len(server.routes("/executed")) == 5)
    await runtime.shutdown()
    await task

    assert gate.peak == 2
    assert max(r.body["batch_size"] for r in server.routes("states/enqueue")) == 2


async def test_shutdown_lets_a_running_node_finish_and_report(
    server: FakeServer, make_runtime: RuntimeFactory
) -> None:
    gate = Gate()
    held = gate.node()
    state_id = server.add_state(held.__name__)
    runtime = make_runtime(held)
    task = asyncio.create_task(runtime.run())
    await wait_until(lambda: gate.running == 1)

    stopping = asyncio.create_task(runtime.shutdown())
    await asyncio.sleep(0.05)
    polls_at_shutdown = len(server.routes("states/enqueue"))
    assert not stopping.done()
    assert server.routes("/executed") == []
    gate.release.set()
    await asyncio.wait_for(stopping, HANG_GUARD)

    assert [r.path for r in server.routes("/executed")] == [f"{PREFIX}/state/{state_id}/executed"]
    assert len(server.routes("states/enqueue")) == polls_at_shutdown
    assert task.done()
    await task


async def test_shutdown_cancels_nodes_after_the_grace_period(
    server: FakeServer, make_runtime: RuntimeFactory
) -> None:
    gate = Gate()
    held = gate.node()
    state_id = server.add_state(held.__name__)
    runtime = make_runtime(held)
    task = asyncio.create_task(runtime.run())
    await wait_until(lambda: gate.running == 1)

    await asyncio.wait_for(runtime.shutdown(grace_period=0.05), HANG_GUARD)

    errored = server.routes("/errored")
    assert [r.path for r in errored] == [f"{PREFIX}/state/{state_id}/errored"]
    assert "Cancelled" in errored[0].body["error"]
    assert server.routes("/executed") == []
    await task


async def test_shutdown_is_idempotent(server: FakeServer, make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(Greet)
    task = asyncio.create_task(runtime.run())
    await wait_until(lambda: len(server.routes("states/enqueue")) > 0)

    await asyncio.gather(runtime.shutdown(), runtime.shutdown())
    await runtime.shutdown()

    await task


async def test_a_stopped_runtime_cannot_run_again(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(Greet)
    await runtime.shutdown()

    with pytest.raises(RuntimeError, match="stopped"):
        await runtime.run()
    with pytest.raises(RuntimeError, match="stopped"):
        await runtime.run_once()


async def test_run_once_is_refused_while_running(server: FakeServer, make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(Greet)
    task = asyncio.create_task(runtime.run())
    await wait_until(lambda: len(server.routes("states/enqueue")) > 0)

    with pytest.raises(RuntimeError, match="running"):
        await runtime.run_once()

    await runtime.shutdown()
    await task


async def test_registration_failure_raises_from_run_and_leaves_the_runtime_usable(
    server: FakeServer, make_runtime: RuntimeFactory
) -> None:
    server.fail("^nodes/$", 401, detail="Invalid API key")
    runtime = make_runtime(Greet)

    with pytest.raises(AuthenticationError):
        await runtime.run()

    server.add_state("Greet", {"name": "Ada"})
    async with runtime:
        await wait_until(lambda: len(server.routes("/executed")) == 1)


async def test_start_inside_a_running_loop_returns_a_task(
    server: FakeServer, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime(Greet)
    server.add_state("Greet", {"name": "Ada"})

    task = runtime.start()

    assert isinstance(task, asyncio.Task)
    await wait_until(lambda: len(server.routes("/executed")) == 1)
    await runtime.shutdown()
    await task


async def test_poll_errors_are_survived(
    server: FakeServer, make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server.fail("states/enqueue", 500, times=2)
    server.add_state("Greet", {"name": "Ada"})
    runtime = make_runtime(Greet)

    with caplog.at_level(logging.WARNING, logger="exospherehost"):
        async with runtime:
            await wait_until(lambda: len(server.routes("/executed")) == 1)

    assert len(server.routes("states/enqueue")) >= 3
    assert sum("claiming states failed" in r.getMessage() for r in caplog.records) == 2


async def test_long_poll_picks_up_new_work_at_once_and_shutdown_does_not_wait_for_it(
    server: FakeServer, make_runtime: RuntimeFactory
) -> None:
    runtime = make_runtime(Greet, long_poll_ms=30_000, poll_interval=1)
    task = asyncio.create_task(runtime.run())
    await wait_until(lambda: len(server.routes("states/enqueue")) == 1)

    state_id = server.add_state("Greet", {"name": "Ada"})
    await wait_until(lambda: len(server.routes("/executed")) == 1)
    await wait_until(lambda: len(server.routes("states/enqueue")) == 2)
    await asyncio.wait_for(runtime.shutdown(), HANG_GUARD)  # the held poll would last 30 s

    # The poll held open when the work arrived handed it out (not a later poll), and shutdown
    # abandoned the next held poll instead of waiting it out.
    assert server.deliveries == [[state_id]]
    assert server.abandoned_polls == 1
    assert server.routes("states/enqueue")[0].body["wait_ms"] == 30_000
    await task


async def test_heartbeats_are_sent_while_a_leased_node_runs(
    server: FakeServer, make_runtime: RuntimeFactory
) -> None:
    gate = Gate()
    held = gate.node()
    state_id = server.add_state(held.__name__, lease=True)
    runtime = make_runtime(held, heartbeat_interval=0.02)

    async with runtime:
        await wait_until(lambda: len(server.routes("/heartbeat")) >= 2)
        gate.release.set()
        await wait_until(lambda: len(server.routes("/executed")) == 1)
        beats = len(server.routes("/heartbeat"))
        await asyncio.sleep(0.06)
        assert len(server.routes("/heartbeat")) == beats  # stopped with the node

    heartbeat = server.routes("/heartbeat")[0]
    assert (heartbeat.method, heartbeat.path, heartbeat.body) == (
        "POST",
        f"{PREFIX}/state/{state_id}/heartbeat",
        {},
    )


async def test_lost_lease_stops_heartbeats_and_the_late_report_is_logged(
    server: FakeServer, make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    gate = Gate()
    held = gate.node()
    server.add_state(held.__name__, lease=True)
    server.fail("/heartbeat$", 409, detail="lease lost")
    server.fail("/executed$", 409, detail="lease lost")
    runtime = make_runtime(held, heartbeat_interval=0.02)

    with caplog.at_level(logging.WARNING, logger="exospherehost"):
        async with runtime:
            await wait_until(lambda: len(server.routes("/heartbeat")) == 1)
            await asyncio.sleep(0.08)
            gate.release.set()
            await wait_until(lambda: len(server.routes("/executed")) == 1)

    assert len(server.routes("/heartbeat")) == 1
    assert len(server.routes("/executed")) == 1
    assert server.routes("/errored") == []
    messages = [r.getMessage() for r in caplog.records]
    assert any("lease lost" in m and "heartbeat" in m for m in messages)
    assert any("executed report refused" in m for m in messages)


async def test_states_without_a_lease_get_no_heartbeats(
    server: FakeServer, make_runtime: RuntimeFactory
) -> None:
    gate = Gate()
    held = gate.node()
    server.add_state(held.__name__)
    runtime = make_runtime(held, heartbeat_interval=0.01)

    async with runtime:
        await wait_until(lambda: gate.running == 1)
        await asyncio.sleep(0.05)
        gate.release.set()
        await wait_until(lambda: len(server.routes("/executed")) == 1)

    assert server.routes("/heartbeat") == []


def test_runtime_is_constructible_outside_an_event_loop(server: FakeServer) -> None:
    runtime = Runtime("test", "rt", [Greet], "http://sm.test", "k", transport=server.transport())
    server.add_state("Greet", {"name": "Ada"})

    async def once_then_stop() -> int:
        result = await runtime.run_once()
        await runtime.shutdown()
        return result.executed

    assert asyncio.run(once_then_stop()) == 1


_WORKER_SCRIPT = """
import asyncio
import httpx
from pydantic import BaseModel
from exospherehost import BaseNode, Runtime

class Slow(BaseNode):
    class Outputs(BaseModel):
        done: str

    async def execute(self):
        print("started", flush=True)
        await asyncio.sleep(0.3)
        return self.Outputs(done="yes")

handed_out = False

async def server(request):
    global handed_out
    if request.url.path.endswith("/states/enqueue"):
        if not handed_out:
            handed_out = True
            state = {"state_id": "s1", "node_name": "Slow", "inputs": {}}
            return httpx.Response(200, json={"states": [state]})
        await asyncio.sleep(0.02)
        return httpx.Response(200, json={"states": []})
    if request.url.path.endswith("/executed"):
        print("executed", flush=True)
    return httpx.Response(200, json={})

runtime = Runtime("ns", "rt", [Slow], "http://sm.test", "k", poll_interval=0.01, long_poll_ms=0,
                  transport=httpx.MockTransport(server))
runtime.start()
print("exited", flush=True)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM handling is POSIX-only")
def test_start_blocks_and_sigterm_shuts_down_gracefully() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", _WORKER_SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "started"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    finally:
        process.kill()

    assert process.returncode == 0, err
    assert out.split() == ["executed", "exited"]
