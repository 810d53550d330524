"""One official ``exospherehost==0.0.3`` runtime serving `Quick` in COMPAT_TUNED_NAMESPACE.

`Quick` takes about 50 ms. With COMPAT_HANG=1, a state whose input `mode` is "hang" never
finishes (it records that it started): the test kills this process while it holds such claims
and starts another one, without COMPAT_HANG, to finish them.
"""

import asyncio
import os

from pydantic import BaseModel

import _harness as h
from exospherehost import GraphNodeModel, Runtime, StateManager
from exospherehost import BaseNode

NAMESPACE = os.environ["COMPAT_TUNED_NAMESPACE"]
HANG = os.environ.get("COMPAT_HANG") == "1"


class Quick(BaseNode):
    class Inputs(BaseModel):
        mode: str
        tag: str

    class Outputs(BaseModel):
        tag: str

    async def execute(self):
        if HANG and self.inputs.mode == "hang":
            h.record_event("hanging", tag=self.inputs.tag)
            await asyncio.sleep(3600)
        await asyncio.sleep(0.05)
        return self.Outputs(tag=self.inputs.tag)


async def serve():
    runtime = Runtime(
        namespace=NAMESPACE, name="tuned", nodes=[Quick], batch_size=10, workers=10, poll_interval=0
    )
    await h.start_runtime(runtime, NAMESPACE, [Quick])
    nodes = [
        GraphNodeModel(
            node_name="Quick", namespace=NAMESPACE, identifier="quick", inputs={"mode": "x", "tag": "x"}
        )
    ]
    await StateManager(namespace=NAMESPACE).upsert_graph("quick", nodes, secrets={})
    return {"namespace": NAMESPACE}


if __name__ == "__main__":
    h.run({"serve": serve})
