"""Two nodes, a graph that chains them, one run. Start a server first (`make run` prints a key):

    EXOSPHERE_STATE_MANAGER_URI=http://127.0.0.1:8000 EXOSPHERE_API_KEY=<key> python examples/hello_node.py

With `--serve` the runtime then keeps serving the nodes, so runs triggered with curl execute too.
"""

import asyncio
import sys

from pydantic import BaseModel

from exospherehost import BaseNode, GraphNodeModel, Runtime, StateManager, StoreConfigModel


class Greet(BaseNode):
    class Inputs(BaseModel):
        name: str

    class Outputs(BaseModel):
        greeting: str

    async def execute(self) -> Outputs:
        return self.Outputs(greeting=f"Hello, {self.inputs.name}!")


class Shout(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        text: str

    async def execute(self) -> Outputs:
        return self.Outputs(text=self.inputs.text.upper())


GRAPH = [
    GraphNodeModel(
        node_name="Greet",
        namespace="hello",
        identifier="greet",
        inputs={"name": "${{ store.name }}"},
        next_nodes=["shout"],
    ),
    GraphNodeModel(
        node_name="Shout",
        namespace="hello",
        identifier="shout",
        inputs={"text": "${{ greet.outputs.greeting }}"},
    ),
]


async def main(name: str = "world") -> str:
    """Serve the nodes, upsert the graph, trigger one run and return the last node's output."""
    runtime = Runtime(namespace="hello", name="hello-runtime", nodes=[Greet, Shout])
    async with runtime, StateManager(namespace="hello") as client:
        store_config = StoreConfigModel(required_keys=["name"])
        await client.upsert_graph("hello", GRAPH, secrets={}, store_config=store_config)
        run = await client.trigger("hello", store={"name": name})
        while True:
            states = (await client.list_states(run["run_id"]))["states"]
            done = [s for s in states if s["identifier"] == "shout" and s["status"] == "SUCCESS"]
            if done:
                return str(done[0]["outputs"]["text"])
            await asyncio.sleep(0.05)


if __name__ == "__main__":
    print(asyncio.run(main()))
    if "--serve" in sys.argv:
        Runtime(namespace="hello", name="hello-runtime", nodes=[Greet, Shout]).start()
