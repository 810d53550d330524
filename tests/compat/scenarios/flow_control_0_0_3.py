"""One official ``exospherehost==0.0.3`` runtime serving `Hold` in COMPAT_FLOW_NAMESPACE, with ten
workers. `Hold` records when it starts and ends (per `key`) and takes 0.2 s. The test upserts the
graph with its limits through the REST API (this release's models do not know them): the server
applies them when it hands out work, the runtime knows nothing of them.
"""

import asyncio
import os

from pydantic import BaseModel

import _harness as h
from exospherehost import BaseNode, Runtime

NAMESPACE = os.environ["COMPAT_FLOW_NAMESPACE"]


class Hold(BaseNode):
    class Inputs(BaseModel):
        key: str
        tag: str

    class Outputs(BaseModel):
        tag: str

    async def execute(self):
        h.record_event("start", key=self.inputs.key, tag=self.inputs.tag)
        await asyncio.sleep(0.2)
        h.record_event("end", key=self.inputs.key, tag=self.inputs.tag)
        return self.Outputs(tag=self.inputs.tag)


async def serve():
    runtime = Runtime(
        namespace=NAMESPACE, name="flow", nodes=[Hold], batch_size=10, workers=10, poll_interval=0
    )
    await h.start_runtime(runtime, NAMESPACE, [Hold])
    return {"namespace": NAMESPACE}


if __name__ == "__main__":
    h.run({"serve": serve})
