"""Fan-out: a node that returns a list starts one branch per element.

    split ──► measure      (one `measure` per word)

Run it (with EXOSPHERE_STATE_MANAGER_URI and EXOSPHERE_API_KEY set):

    python -m examples.graphs.fan_out
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from exospherehost import BaseNode, GraphNodeModel, Runtime, StateManager

from ._common import of, unique_namespace, wait_for_run


class Split(BaseNode):
    class Inputs(BaseModel):
        sentence: str

    class Outputs(BaseModel):
        word: str

    async def execute(self) -> list[Outputs]:
        return [self.Outputs(word=word) for word in self.inputs.sentence.split()]


class Measure(BaseNode):
    class Inputs(BaseModel):
        word: str

    class Outputs(BaseModel):
        report: str

    async def execute(self) -> Outputs:
        return self.Outputs(report=f"{self.inputs.word}={len(self.inputs.word)}")


def fan_out_graph(ns: str) -> list[GraphNodeModel]:
    return [
        GraphNodeModel(
            node_name="Split",
            namespace=ns,
            identifier="split",
            inputs={"sentence": "a default sentence"},
            next_nodes=["measure"],
        ),
        GraphNodeModel(
            node_name="Measure",
            namespace=ns,
            identifier="measure",
            inputs={"word": "${{ split.outputs.word }}"},  # this branch's word
        ),
    ]


async def main() -> dict[str, object]:
    """Split three words; return how many `split` states there were and every report."""
    ns = unique_namespace("fan-out")
    async with Runtime(ns, "fan-out-runtime", [Split, Measure], workers=4), StateManager(ns) as client:
        await client.upsert_graph("words", fan_out_graph(ns), secrets={})
        run = await client.trigger("words", inputs={"sentence": "one two three"})
        states = await wait_for_run(client, run["run_id"])
    return {
        "split_states": len(of(states, "split")),
        "reports": sorted(s["outputs"]["report"] for s in of(states, "measure")),
        "statuses": sorted({s["status"] for s in states}),
    }


if __name__ == "__main__":
    print(asyncio.run(main()))
