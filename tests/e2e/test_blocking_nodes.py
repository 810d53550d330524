"""Nodes that block, against a real server whose lease is 2 s (see conftest.SERVER_ENV).

A plain `def execute` that sleeps past the lease runs once and succeeds, while an async node on
the same runtime, triggered after it, finishes first. An `async def execute` that blocks the
event loop past the lease (`time.sleep`) is named in one warning, and is not re-delivered: the
heartbeats come from a thread of their own. The docs' example of blocking code runs too.

Order is asserted with events and lists, never with durations.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
import uuid

import pytest
from pydantic import BaseModel

from examples.sdk import blocking
from exospherehost import (
    BaseNode,
    GraphNodeModel,
    RetryPolicyModel,
    RetryStrategyEnum,
    Runtime,
    StateManager,
)
from tests.e2e.conftest import wait_run
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.e2e

NODE_SECONDS = 4  # past the 2 s lease: without heartbeats the server would re-deliver the state
QUICK_RETRY = RetryPolicyModel(max_retries=2, strategy=RetryStrategyEnum.FIXED, backoff_factor=50)
"""A lapsed lease would show as a second attempt (`retry_count` 1) and a second execution."""
HANG_GUARD = 30.0

SLEEPER_STARTED = threading.Event()
EXECUTIONS: list[str] = []
"""One entry per `execute` call, in the order the nodes finished."""
_LOCK = threading.Lock()


def _finished(name: str) -> None:
    with _LOCK:
        EXECUTIONS.append(name)


class SyncSleeper(BaseNode):
    class Outputs(BaseModel):
        slept: str

    def execute(self) -> Outputs:
        SLEEPER_STARTED.set()
        time.sleep(NODE_SECONDS)
        _finished("SyncSleeper")
        return self.Outputs(slept=str(NODE_SECONDS))


class Quick(BaseNode):
    class Outputs(BaseModel):
        done: str

    async def execute(self) -> Outputs:
        _finished("Quick")
        return self.Outputs(done="yes")


class LoopBlocker(BaseNode):
    """Wrong on purpose: blocking code in an `async def execute` holds the event loop."""

    class Outputs(BaseModel):
        slept: str

    async def execute(self) -> Outputs:
        time.sleep(NODE_SECONDS)  # the point of the test
        _finished("LoopBlocker")
        return self.Outputs(slept=str(NODE_SECONDS))


async def upsert_one_node_graph(client: StateManager, namespace: str, node: type[BaseNode]) -> str:
    """A graph of one node, named after it in lower case."""
    name = node.__name__.lower()
    nodes = [GraphNodeModel(node_name=node.__name__, namespace=namespace, identifier=name)]
    await client.upsert_graph(name, nodes, secrets={}, retry_policy=QUICK_RETRY)
    return name


@pytest.fixture(autouse=True)
def fresh_records() -> None:
    SLEEPER_STARTED.clear()
    EXECUTIONS.clear()


@pytest.mark.timeout(120)
async def test_a_sync_node_past_its_lease_runs_once_while_other_nodes_go_on(sdk_env: LiveServer) -> None:
    ns = f"blocking-{uuid.uuid4().hex[:8]}"
    async with StateManager(ns) as client, Runtime(ns, "worker", [SyncSleeper, Quick], workers=2):
        slow_run = await client.trigger(await upsert_one_node_graph(client, ns, SyncSleeper))
        quick = await upsert_one_node_graph(client, ns, Quick)
        assert await asyncio.to_thread(SLEEPER_STARTED.wait, HANG_GUARD)
        quick_run = await client.trigger(quick)  # triggered while the sleeper blocks its thread
        quick_states = await wait_run(client, quick_run["run_id"], timeout=HANG_GUARD)
        slow_states = await wait_run(client, slow_run["run_id"], timeout=HANG_GUARD)

    assert [(s["status"], s["retry_count"]) for s in quick_states] == [("SUCCESS", 0)]
    assert [(s["status"], s["retry_count"]) for s in slow_states] == [("SUCCESS", 0)]
    assert slow_states[0]["outputs"] == {"slept": str(NODE_SECONDS)}
    assert EXECUTIONS == ["Quick", "SyncSleeper"]  # exactly one execution of the sleeper, last


@pytest.mark.timeout(120)
async def test_an_async_node_blocking_the_loop_is_named_and_not_redelivered(
    sdk_env: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    ns = f"blocking-{uuid.uuid4().hex[:8]}"
    caplog.set_level(logging.WARNING, logger="exospherehost")
    async with StateManager(ns) as client, Runtime(ns, "worker", [LoopBlocker], blocked_loop_warning=1.0):
        run = await client.trigger(await upsert_one_node_graph(client, ns, LoopBlocker))
        states = await wait_run(client, run["run_id"], timeout=HANG_GUARD)

    assert [(s["status"], s["retry_count"]) for s in states] == [("SUCCESS", 0)]
    assert EXECUTIONS == ["LoopBlocker"]
    warnings = [r.getMessage() for r in caplog.records if "blocked the event loop" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert f"node LoopBlocker (state {states[0]['id']})" in warnings[0]
    assert "`def execute`" in warnings[0] and "asyncio.to_thread" in warnings[0]


@pytest.mark.timeout(120)
async def test_the_blocking_code_example_of_the_docs(sdk_env: LiveServer) -> None:
    result = await blocking.main("hello")

    expected = b"hello"
    for _ in range(200_000):
        expected = hashlib.sha256(expected).digest()
    assert result == {"digest": expected.hex(), "answer": f"{expected.hex()[:12]} is known"}
