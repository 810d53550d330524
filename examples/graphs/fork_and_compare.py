"""Fork a finished run from one node with a new input, and compare the two runs.

A research run fetches a topic's sources (slow, paid for once), drafts a summary from a prompt,
and scores the draft. The draft's prompt was not good enough: fork the run from `draft` with a
new prompt (the sources are reused, not fetched again) and compare what changed.

Run it (with EXOSPHERE_STATE_MANAGER_URI and EXOSPHERE_API_KEY set):

    python -m examples.graphs.fork_and_compare
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from pydantic import BaseModel

from exospherehost import BaseNode, GraphNodeModel, Runtime, StateManager

from ._common import of, unique_namespace, wait_for_run

CALLS: Counter[str] = Counter()  # how often each node ran


class Fetch(BaseNode):
    class Inputs(BaseModel):
        topic: str

    class Outputs(BaseModel):
        sources: str

    async def execute(self) -> Outputs:
        CALLS["fetch"] += 1
        return self.Outputs(sources=f"three papers on {self.inputs.topic}")


class Draft(BaseNode):
    class Inputs(BaseModel):
        sources: str
        prompt: str

    class Outputs(BaseModel):
        summary: str

    async def execute(self) -> Outputs:
        CALLS["draft"] += 1
        return self.Outputs(summary=f"{self.inputs.prompt}: {self.inputs.sources}")


class Score(BaseNode):
    class Inputs(BaseModel):
        summary: str

    class Outputs(BaseModel):
        words: str

    async def execute(self) -> Outputs:
        CALLS["score"] += 1
        return self.Outputs(words=str(len(self.inputs.summary.split())))


def research(ns: str) -> list[GraphNodeModel]:
    return [
        GraphNodeModel(
            node_name="Fetch",
            namespace=ns,
            identifier="fetch",
            inputs={"topic": "tides"},
            next_nodes=["draft"],
        ),
        GraphNodeModel(
            node_name="Draft",
            namespace=ns,
            identifier="draft",
            inputs={"sources": "${{ fetch.outputs.sources }}", "prompt": "Summarise"},
            next_nodes=["score"],
        ),
        GraphNodeModel(
            node_name="Score",
            namespace=ns,
            identifier="score",
            inputs={"summary": "${{ draft.outputs.summary }}"},
        ),
    ]


async def main() -> dict[str, Any]:
    """Run, fork from `draft` with a new prompt, compare; return what a user would look at."""
    CALLS.clear()
    ns = unique_namespace("research")
    async with Runtime(ns, "research-runtime", [Fetch, Draft, Score]), StateManager(ns) as client:
        await client.upsert_graph("research", research(ns), secrets={})
        original = (await client.trigger("research"))["run_id"]
        await wait_for_run(client, original)

        fork = await client.fork_run(
            original, from_=["draft"], inputs={"draft": {"prompt": "Explain to a ten-year-old"}}
        )
        states = await wait_for_run(client, fork.run_id)
        diff = await client.diff_runs(original, fork.run_id)

    return {
        "reused": fork.reused,
        "calls": dict(CALLS),  # fetch ran once: the fork reused it
        "summary": of(states, "draft")[0]["outputs"]["summary"],
        "changes": diff.summary.model_dump(),
        "changed": [
            (node.identifier, [field.path for field in node.fields])
            for node in diff.nodes
            if node.change == "changed"
        ],
    }


if __name__ == "__main__":
    print(asyncio.run(main()))
