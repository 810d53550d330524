"""No work is lost: a worker killed mid-node, a node that outlives its lease, an abandoned poll."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import uuid

import httpx
import pytest
from pydantic import BaseModel

from exospherehost import BaseNode, GraphNodeModel, RetryPolicyModel, RetryStrategyEnum, Runtime, StateManager
from tests.e2e.conftest import wait_run
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.e2e

QUICK_RETRY = RetryPolicyModel(max_retries=2, strategy=RetryStrategyEnum.FIXED, backoff_factor=50)


class Work(BaseNode):
    """The healthy worker's version of the node: finishes at once."""

    class Inputs(BaseModel):
        job: str

    class Outputs(BaseModel):
        done: str

    async def execute(self) -> Outputs:
        return self.Outputs(done=f"{self.inputs.job} done")


class Long(BaseNode):
    class Inputs(BaseModel):
        seconds: str

    class Outputs(BaseModel):
        slept: str

    async def execute(self) -> Outputs:
        await asyncio.sleep(float(self.inputs.seconds))
        return self.Outputs(slept=self.inputs.seconds)


# A worker process whose `Work` node hangs: it claims the state, then we kill it with SIGKILL.
DOOMED_WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from pydantic import BaseModel
    from exospherehost import BaseNode, Runtime

    class Work(BaseNode):
        class Inputs(BaseModel):
            job: str
        class Outputs(BaseModel):
            done: str
        async def execute(self):
            print("claimed", flush=True)
            await asyncio.sleep(3600)

    Runtime(sys.argv[1], "doomed", [Work], heartbeat_interval=30).start()
    """
)


async def _states(server: LiveServer, ns: str, run_id: str) -> list[dict[str, object]]:
    async with httpx.AsyncClient(base_url=server.base_url, headers=server.headers) as http:
        answer = await http.get(f"/v0/namespace/{ns}/states/run/{run_id}")
        return list(answer.json()["states"])


async def test_work_of_a_killed_worker_is_redelivered_and_the_old_holder_fenced(sdk_env: LiveServer) -> None:
    ns = f"fault-{uuid.uuid4().hex[:8]}"
    graph = [GraphNodeModel(node_name="Work", namespace=ns, identifier="work", inputs={"job": "report"})]
    async with StateManager(ns) as client:
        # Register the node first (as the doomed worker will), so the graph validates.
        async with Runtime(ns, "registrar", [Work]):
            pass
        await client.upsert_graph("jobs", graph, secrets={}, retry_policy=QUICK_RETRY)
        doomed = subprocess.Popen(
            [sys.executable, "-c", DOOMED_WORKER, ns],
            env=os.environ.copy(),
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            run = await client.trigger("jobs", inputs={"job": "report"})
            assert doomed.stdout is not None
            assert await asyncio.to_thread(doomed.stdout.readline) == "claimed\n"
        finally:
            doomed.send_signal(signal.SIGKILL)
            doomed.wait()
            if doomed.stdout is not None:
                doomed.stdout.close()
        first = (await _states(sdk_env, ns, run["run_id"]))[0]
        assert first["status"] == "QUEUED"

        async with Runtime(ns, "healthy", [Work]):
            states = await wait_run(client, run["run_id"], min_states=2)

    assert [s["status"] for s in states] == ["RETRY_CREATED", "SUCCESS"]
    assert "Lease expired" in str(states[0]["error"])
    assert states[1]["outputs"] == {"done": "report done"}
    async with httpx.AsyncClient(base_url=sdk_env.base_url, headers=sdk_env.headers) as http:
        late = await http.post(
            f"/v0/namespace/{ns}/state/{first['id']}/executed", json={"outputs": [{"done": "x"}]}
        )
    assert late.status_code == 409
    assert [s["status"] for s in await _states(sdk_env, ns, run["run_id"])] == ["RETRY_CREATED", "SUCCESS"]


async def test_heartbeats_keep_a_node_longer_than_its_lease(sdk_env: LiveServer) -> None:
    ns = f"fault-{uuid.uuid4().hex[:8]}"
    graph = [GraphNodeModel(node_name="Long", namespace=ns, identifier="long", inputs={"seconds": "3"})]
    # Default heartbeat settings: the runtime paces its beats by the lease the server gave.
    async with Runtime(ns, "rt", [Long]), StateManager(ns) as client:
        await client.upsert_graph("long", graph, secrets={})
        run = await client.trigger("long")  # the server's lease is 2 s; the node runs 3 s
        states = await wait_run(client, run["run_id"], timeout=15)
    assert [(s["status"], s["retry_count"]) for s in states] == [("SUCCESS", 0)]


async def test_a_runtime_that_shut_down_leaves_no_poll_behind(sdk_env: LiveServer) -> None:
    ns = f"fault-{uuid.uuid4().hex[:8]}"
    graph = [GraphNodeModel(node_name="Work", namespace=ns, identifier="work", inputs={"job": "late"})]
    async with StateManager(ns) as client:
        async with Runtime(ns, "first", [Work]):
            await client.upsert_graph("jobs", graph, secrets={})
            await asyncio.sleep(0.3)  # the runtime is now inside a long-poll, which shutdown abandons
        run = await client.trigger("jobs")
        async with Runtime(ns, "second", [Work]):
            states = await wait_run(client, run["run_id"])
    # One attempt: had the abandoned poll claimed it, its lease would have expired and the work
    # would have run as a second attempt (retry_count 1).
    assert [(s["status"], s["retry_count"]) for s in states] == [("SUCCESS", 0)]
