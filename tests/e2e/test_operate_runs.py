"""Operating runs with our SDK against a real server: cancel a run whose node is running,
bound a node's running time, trigger safely from a retrying client."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from pydantic import BaseModel

from exospherehost import BaseNode, GraphNodeModel, RetryPolicyModel, Runtime, StateManager
from tests.e2e.conftest import wait_run
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.e2e

STARTED: dict[str, asyncio.Event] = {}
FINISHED: set[str] = set()
NO_RETRY = RetryPolicyModel(max_retries=0)


class Sleepy(BaseNode):
    """Sleeps for as long as its input says, noting when it starts and if it ever finishes."""

    class Inputs(BaseModel):
        seconds: str
        tag: str

    class Outputs(BaseModel):
        done: str

    async def execute(self) -> Outputs:
        STARTED.setdefault(self.inputs.tag, asyncio.Event()).set()
        await asyncio.sleep(float(self.inputs.seconds))
        FINISHED.add(self.inputs.tag)
        return self.Outputs(done="yes")


def _graph(ns: str, tag: str, seconds: float, timeout: int | None = None) -> list[GraphNodeModel]:
    return [
        GraphNodeModel(
            node_name="Sleepy",
            namespace=ns,
            identifier="sleepy",
            inputs={"seconds": str(seconds), "tag": tag},
            timeout_seconds=timeout,
        )
    ]


async def test_cancelling_a_run_stops_its_running_node(
    sdk_env: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    ns, tag = f"cancel-{uuid.uuid4().hex[:8]}", "cancel"
    caplog.set_level(logging.WARNING, logger="exospherehost")
    async with StateManager(ns) as client, Runtime(ns, "worker", [Sleepy], heartbeat_interval=0.2):
        await client.upsert_graph("slow", _graph(ns, tag, 30), secrets={}, retry_policy=NO_RETRY)
        run = await client.trigger("slow")
        await asyncio.wait_for(STARTED.setdefault(tag, asyncio.Event()).wait(), 10)

        answer = await client.cancel_run(run["run_id"])
        states = await wait_run(client, run["run_id"])
        await asyncio.sleep(0.6)  # a few heartbeats: the runtime hears of the cancel

    assert answer == {"run_id": run["run_id"], "status": "CANCELLED", "cancelled_count": 1}
    assert [s["status"] for s in states] == ["CANCELLED"]
    assert tag not in FINISHED
    assert sum("cancelled" in record.getMessage() for record in caplog.records) == 1


async def test_a_node_past_its_timeout_is_stopped_and_the_state_timed_out(sdk_env: LiveServer) -> None:
    ns, tag = f"timeout-{uuid.uuid4().hex[:8]}", "timeout"
    async with StateManager(ns) as client, Runtime(ns, "worker", [Sleepy]):
        await client.upsert_graph("slow", _graph(ns, tag, 30, timeout=1), secrets={}, retry_policy=NO_RETRY)
        run = await client.trigger("slow")
        states = await wait_run(client, run["run_id"])

    [state] = states
    assert state["status"] == "TIMEDOUT" and "timeout of 1s" in state["error"]
    assert tag not in FINISHED


async def test_a_retried_trigger_with_one_idempotency_key_starts_one_run(sdk_env: LiveServer) -> None:
    ns = f"idem-{uuid.uuid4().hex[:8]}"
    async with StateManager(ns) as client:
        async with Runtime(ns, "worker", [Sleepy]):
            await client.upsert_graph("quick", _graph(ns, "idem", 0), secrets={})
            answers = await asyncio.gather(
                *(client.trigger("quick", idempotency_key="order-1") for _ in range(4))
            )
            await wait_run(client, answers[0]["run_id"])
        runs = (await client.list_runs(1, 10))["runs"]

    assert len({answer["run_id"] for answer in answers}) == 1
    assert [r["run_id"] for r in runs] == [answers[0]["run_id"]]
