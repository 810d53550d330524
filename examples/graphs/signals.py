"""Signals: a node asks to run again later (ReQueueAfterSignal) or ends its branch (PruneSignal).

    fetch ──► keep ──► publish     (`fetch` fans out; `keep` prunes the spam branch)

Run it (with EXOSPHERE_STATE_MANAGER_URI and EXOSPHERE_API_KEY set):

    python -m examples.graphs.signals
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from exospherehost import BaseNode, GraphNodeModel, PruneSignal, ReQueueAfterSignal, Runtime, StateManager

from ._common import of, run_status, unique_namespace, wait_for_run

CALLS: dict[str, int] = {}


class Fetch(BaseNode):
    """The inbox is not ready on the first call: come back in 200 ms."""

    class Inputs(BaseModel):
        inbox: str

    class Outputs(BaseModel):
        message: str

    async def execute(self) -> list[Outputs]:
        CALLS[self.inputs.inbox] = CALLS.get(self.inputs.inbox, 0) + 1
        if CALLS[self.inputs.inbox] == 1:
            raise ReQueueAfterSignal(timedelta(milliseconds=200))
        return [self.Outputs(message=m) for m in ("hello", "spam", "see you")]


class Keep(BaseNode):
    class Inputs(BaseModel):
        message: str

    class Outputs(BaseModel):
        message: str

    async def execute(self) -> Outputs:
        if self.inputs.message == "spam":
            raise PruneSignal({"reason": "spam"})  # this branch ends here, as a success
        return self.Outputs(message=self.inputs.message)


class Publish(BaseNode):
    class Inputs(BaseModel):
        message: str

    class Outputs(BaseModel):
        published: str

    async def execute(self) -> Outputs:
        return self.Outputs(published=self.inputs.message.upper())


def inbox_graph(ns: str) -> list[GraphNodeModel]:
    return [
        GraphNodeModel(
            node_name="Fetch", namespace=ns, identifier="fetch", inputs={"inbox": ns}, next_nodes=["keep"]
        ),
        GraphNodeModel(
            node_name="Keep",
            namespace=ns,
            identifier="keep",
            inputs={"message": "${{ fetch.outputs.message }}"},
            next_nodes=["publish"],
        ),
        GraphNodeModel(
            node_name="Publish",
            namespace=ns,
            identifier="publish",
            inputs={"message": "${{ keep.outputs.message }}"},
        ),
    ]


async def main() -> dict[str, Any]:
    ns = unique_namespace("inbox")
    async with Runtime(ns, "inbox-runtime", [Fetch, Keep, Publish], workers=4), StateManager(ns) as client:
        await client.upsert_graph("inbox", inbox_graph(ns), secrets={})
        run = await client.trigger("inbox")
        states = await wait_for_run(client, run["run_id"])
        return {
            "fetch_calls": CALLS[ns],
            "fetch_states": len(of(states, "fetch")),
            "keep": sorted((s["status"], s["data"].get("reason", "")) for s in of(states, "keep")),
            "published": sorted(s["outputs"]["published"] for s in of(states, "publish")),
            "run": await run_status(client, run["run_id"]),
        }


if __name__ == "__main__":
    print(asyncio.run(main()))
