"""A chain of three nodes; placeholders carry outputs down the chain.

    shout ──► again ──► frame

Run it against a server (`make run` prints the key):

    EXOSPHERE_STATE_MANAGER_URI=http://127.0.0.1:8000 EXOSPHERE_API_KEY=<key> python -m examples.graphs.chain
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel

from exospherehost import BaseNode, GraphNodeModel, Runtime, StateManager, TriggerState

from ._common import of, unique_namespace, wait_for_run


class Upper(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        text: str

    async def execute(self) -> Outputs:
        return self.Outputs(text=self.inputs.text.upper())


class Frame(BaseNode):
    class Inputs(BaseModel):
        title: str
        body: str

    class Outputs(BaseModel):
        framed: str

    async def execute(self) -> Outputs:
        return self.Outputs(framed=f"[{self.inputs.title}] {self.inputs.body}")


def chain_graph(ns: str) -> list[GraphNodeModel]:
    return [
        GraphNodeModel(
            node_name="Upper",
            namespace=ns,
            identifier="shout",
            inputs={"text": "hello"},  # the default; a trigger may override it
            next_nodes=["again"],
        ),
        GraphNodeModel(
            node_name="Upper",
            namespace=ns,
            identifier="again",
            inputs={"text": "${{ shout.outputs.text }}, world"},
            next_nodes=["frame"],
        ),
        GraphNodeModel(
            node_name="Frame",
            namespace=ns,
            identifier="frame",
            # Any ancestor may be referenced, not only the direct parent.
            inputs={"title": "${{ shout.outputs.text }}", "body": "${{ again.outputs.text }}!"},
        ),
    ]


async def main() -> dict[str, str]:
    """Run the chain three ways; return the final output of each run."""
    ns = unique_namespace("chain")
    async with Runtime(ns, "chain-runtime", [Upper, Frame]), StateManager(ns) as client:
        await client.upsert_graph("chain", chain_graph(ns), secrets={})
        runs = {
            # HEAD form: start the root with its template inputs ...
            "template": await client.trigger("chain"),
            # ... or override some of them;
            "head": await client.trigger("chain", inputs={"text": "hi"}),
            # SEED form: seed a state with exactly these inputs.
            "seed": await client.trigger(
                "chain", state=TriggerState(identifier="shout", inputs={"text": "hey"})
            ),
        }
        results = {}
        for label, run in runs.items():
            states = await wait_for_run(client, run["run_id"])
            results[label] = of(states, "frame")[0]["outputs"]["framed"]
        return results


if __name__ == "__main__":
    print(asyncio.run(main()))
