"""Following and steering a run over real HTTP, on the embedded store, with our SDK's runtime:
a fan-out whose branches fail shows as FAILED in every view, retry-failed retries each once,
and the run ends SUCCESS; queue health sees the runtime asking."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from exospherehost import BaseNode, GraphNodeModel, RetryPolicyModel, Runtime, StateManager
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.e2e

HEALED: set[str] = set()


class Split(BaseNode):
    class Inputs(BaseModel):
        tag: str

    class Outputs(BaseModel):
        item: str

    async def execute(self) -> list[Outputs]:
        return [self.Outputs(item=f"{self.inputs.tag}-{i}") for i in range(3)]


class Flaky(BaseNode):
    """Fails until its tag is healed."""

    class Inputs(BaseModel):
        item: str

    class Outputs(BaseModel):
        done: str

    async def execute(self) -> Outputs:
        if self.inputs.item.rsplit("-", 1)[0] not in HEALED:
            raise RuntimeError(f"not healed yet: {self.inputs.item}")
        return self.Outputs(done=self.inputs.item)


async def _until(http: httpx.AsyncClient, path: str, check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        body = (await http.get(path)).json()
        if check(body) or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.1)


async def test_a_failed_fan_out_is_visible_and_retry_failed_finishes_it(sdk_env: LiveServer) -> None:
    ns = f"views-{uuid.uuid4().hex[:8]}"
    tag = ns
    graph = [
        GraphNodeModel(
            node_name="Split", namespace=ns, identifier="split", inputs={"tag": tag}, next_nodes=["flaky"]
        ),
        GraphNodeModel(
            node_name="Flaky", namespace=ns, identifier="flaky", inputs={"item": "${{ split.outputs.item }}"}
        ),
    ]
    base = f"{sdk_env.base_url}/v0/namespace/{ns}"
    async with (
        httpx.AsyncClient(base_url=base, headers=sdk_env.headers) as http,
        StateManager(ns) as client,
        Runtime(ns, "worker", [Split, Flaky]),
    ):
        await client.upsert_graph("g", graph, secrets={}, retry_policy=RetryPolicyModel(max_retries=0))
        run_id = (await client.trigger("g"))["run_id"]

        failed = await _until(http, f"/run/{run_id}", lambda run: run["status"] == "FAILED")
        assert failed["status"] == "FAILED", failed
        assert (
            failed["counts"] == {"SUCCESS": 3, "ERRORED": 3} and failed["finished_ms"] >= failed["started_ms"]
        )
        listed = (await http.get("/runs", params={"status": "FAILED", "graph": "g"})).json()["runs"]
        assert [run["run_id"] for run in listed] == [run_id]
        view = (await http.get(f"/run/{run_id}/graph")).json()
        assert {n["identifier"]: (n["status"], n["counts"]) for n in view["nodes"]} == {
            "split": ("SUCCESS", {"SUCCESS": 3}),
            "flaky": ("FAILED", {"ERRORED": 3}),
        }
        errored = (await http.get(f"/run/{run_id}/states", params={"status": "ERRORED"})).json()["states"]
        assert len(errored) == 3 and all("not healed yet" in s["error"] for s in errored)

        HEALED.add(tag)
        retried = (await http.post(f"/run/{run_id}/retry-failed")).json()
        assert retried["retried"] == 3 and retried["status"] in {"RUNNING", "SUCCESS"}  # a fast runtime
        done = await _until(http, f"/run/{run_id}", lambda run: run["status"] == "SUCCESS")
        assert done["status"] == "SUCCESS" and done["counts"] == {"SUCCESS": 6, "RETRY_CREATED": 3}
        assert (await http.post(f"/run/{run_id}/retry-failed")).json()["retried"] == 0

        queues = {row["node_name"]: row for row in (await http.get("/queues")).json()["nodes"]}
        assert queues["Flaky"]["registered"] and queues["Flaky"]["last_poll_ms"] is not None
        assert queues["Flaky"]["due"] == 0 and not queues["Flaky"]["stalled"]


async def test_reading_runs_while_their_states_move_never_ends_them_early(sdk_env: LiveServer) -> None:
    """Dashboards poll runs while runtimes claim and report their states: a read must never
    store a run's end (an early read once stored FAILED with no states, for good)."""
    ns = f"reads-{uuid.uuid4().hex[:8]}"
    base = f"{sdk_env.base_url}/v0/namespace/{ns}"
    async with httpx.AsyncClient(base_url=base, headers=sdk_env.headers) as http:
        node = {"name": "One", "inputs_schema": {}, "outputs_schema": {}, "secrets": []}
        assert (await http.put("/nodes/", json={"runtime_name": "r", "nodes": [node]})).is_success
        template = {"node_name": "One", "namespace": ns, "identifier": "one", "inputs": {}}
        assert (await http.put("/graph/g", json={"secrets": {}, "nodes": [template]})).is_success

        async def one_run() -> str:
            run_id: str = (await http.post("/graph/g/trigger", json={})).json()["run_id"]
            await http.get("/runs", params={"limit": 5})
            claimed = (await http.post("/states/enqueue", json={"nodes": ["One"], "batch_size": 1})).json()
            for state in claimed["states"]:
                await asyncio.gather(http.get(f"/run/{state['run_id']}"), http.get("/runs/1/5"))
                executed = await http.post(f"/state/{state['state_id']}/executed", json={"outputs": [{}]})
                assert executed.is_success
            return run_id

        for _ in range(5):
            await asyncio.gather(*(one_run() for _ in range(12)))
        while claimed := (
            await http.post("/states/enqueue", json={"nodes": ["One"], "batch_size": 50})
        ).json()["states"]:
            for state in claimed:
                await http.post(f"/state/{state['state_id']}/executed", json={"outputs": [{}]})

        runs = (await http.get("/runs", params={"limit": 500})).json()["runs"]
        assert len(runs) == 60
        assert {run["status"] for run in runs} == {"SUCCESS"}, [r for r in runs if r["status"] != "SUCCESS"][
            :2
        ]
        assert all(run["counts"] == {"SUCCESS": 1} for run in runs)
