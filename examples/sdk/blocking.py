"""Blocking code in nodes. Start a server first (`make run` prints a key), then:

    EXOSPHERE_STATE_MANAGER_URI=http://127.0.0.1:8000 EXOSPHERE_API_KEY=<key> python -m examples.sdk.blocking

`Digest` does CPU work in a plain `def execute`: the runtime runs it in one of its worker
threads. `Lookup` is async but has to call a blocking function: it hands that call to a thread
with `asyncio.to_thread`. Either way the runtime's event loop stays free for the other nodes,
the polls and the reports, and the heartbeats keep the states' leases however long the work takes.
"""

import asyncio
import hashlib
import time

from pydantic import BaseModel

from examples.graphs._common import of, unique_namespace, wait_for_run
from exospherehost import BaseNode, GraphNodeModel, Runtime, StateManager


class Digest(BaseNode):
    class Inputs(BaseModel):
        text: str
        rounds: str

    class Outputs(BaseModel):
        digest: str

    def execute(self) -> Outputs:  # a plain def: runs in a worker thread, may block
        data = self.inputs.text.encode()
        for _ in range(int(self.inputs.rounds)):
            data = hashlib.sha256(data).digest()
        return self.Outputs(digest=data.hex())


def legacy_lookup(digest: str) -> str:
    """Stands for a blocking client library: a database driver, an SDK without async support."""
    time.sleep(0.2)
    return f"{digest[:12]} is known"


class Lookup(BaseNode):
    class Inputs(BaseModel):
        digest: str

    class Outputs(BaseModel):
        answer: str

    async def execute(self) -> Outputs:
        answer = await asyncio.to_thread(legacy_lookup, self.inputs.digest)  # not on the loop
        return self.Outputs(answer=answer)


def graph(namespace: str) -> list[GraphNodeModel]:
    return [
        GraphNodeModel(
            node_name="Digest",
            namespace=namespace,
            identifier="digest",
            inputs={"text": "${{ store.text }}", "rounds": "200000"},
            next_nodes=["lookup"],
        ),
        GraphNodeModel(
            node_name="Lookup",
            namespace=namespace,
            identifier="lookup",
            inputs={"digest": "${{ digest.outputs.digest }}"},
        ),
    ]


async def main(text: str = "hello") -> dict[str, str]:
    """Serve both nodes, run the graph once, and return what each node produced."""
    namespace = unique_namespace("blocking")
    async with Runtime(namespace, "blocking-worker", [Digest, Lookup]), StateManager(namespace) as client:
        await client.upsert_graph("digest", graph(namespace), {}, store_config={"required_keys": ["text"]})
        run = await client.trigger("digest", store={"text": text})
        states = await wait_for_run(client, run["run_id"], max_wait=60)
    return {
        "digest": of(states, "digest")[0]["outputs"]["digest"],
        "answer": of(states, "lookup")[0]["outputs"]["answer"],
    }


if __name__ == "__main__":
    print(asyncio.run(main()))
