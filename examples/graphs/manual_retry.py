"""Manual retry: re-run a failed state once the problem is fixed (REST only; the SDK has no call).

Run it (with EXOSPHERE_STATE_MANAGER_URI and EXOSPHERE_API_KEY set):

    python -m examples.graphs.manual_retry
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import httpx
from pydantic import BaseModel

from exospherehost import BaseNode, GraphNodeModel, RetryPolicyModel, Runtime, StateManager

from ._common import of, run_status, unique_namespace, wait_for_run

OUTAGE = {"blog": True}


class Publish(BaseNode):
    class Inputs(BaseModel):
        title: str

    class Outputs(BaseModel):
        url: str

    async def execute(self) -> Outputs:
        if OUTAGE["blog"]:
            raise RuntimeError("blog API is down")
        return self.Outputs(url=f"https://blog.example/{self.inputs.title.replace(' ', '-')}")


async def manual_retry(ns: str, state_id: str, fanout_id: str) -> httpx.Response:
    """`POST /v0/namespace/{ns}/state/{id}/manual-retry` with the SDK's environment variables."""
    base_url, key = os.environ["EXOSPHERE_STATE_MANAGER_URI"], os.environ["EXOSPHERE_API_KEY"]
    async with httpx.AsyncClient(base_url=base_url, headers={"x-api-key": key}) as http:
        path = f"/v0/namespace/{ns}/state/{state_id}/manual-retry"
        return await http.post(path, json={"fanout_id": fanout_id})


async def main() -> dict[str, Any]:
    """Fail a run, fix the outage, retry the failed state by hand; return what happened."""
    OUTAGE["blog"] = True
    ns = unique_namespace("publish")
    graph = [
        GraphNodeModel(node_name="Publish", namespace=ns, identifier="publish", inputs={"title": "hello"})
    ]
    async with Runtime(ns, "publish-runtime", [Publish]), StateManager(ns) as client:
        await client.upsert_graph("publish", graph, secrets={}, retry_policy=RetryPolicyModel(max_retries=0))
        run = await client.trigger("publish")
        failed = of(await wait_for_run(client, run["run_id"]), "publish")[0]
        before = await run_status(client, run["run_id"])

        OUTAGE["blog"] = False  # the outage is over
        fanout_id = str(uuid.uuid4())  # identifies this retry: sending it twice is refused
        retried = await manual_retry(ns, failed["id"], fanout_id)
        states = await wait_for_run(client, run["run_id"])
        again = await manual_retry(ns, failed["id"], fanout_id)
        return {
            "failed": (failed["status"], failed["error"]),
            "run_before": before,
            "retry_answer": (retried.status_code, retried.json()["status"]),
            "states": [(s["status"], s["outputs"].get("url")) for s in states],
            "run_after": await run_status(client, run["run_id"]),
            "duplicate_retry": again.status_code,
        }


if __name__ == "__main__":
    print(asyncio.run(main()))
