"""The runtime the browser suite watches: our SDK serving its nodes in one namespace, in a
process of its own (as a user runs one). Usage: python runtime_app.py NAMESPACE

The server's address and key come from EXOSPHERE_STATE_MANAGER_URI / EXOSPHERE_API_KEY.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from pydantic import BaseModel

from exospherehost import BaseNode, Runtime

# The error a first attempt of FailOnce reports: several lines, and markup that must show as text.
FIRST_FAILURE = (
    "first attempt fails on purpose\n"
    "  while handling <script>alert('x')</script> in the input\n"
    "  the next attempt succeeds (the marker file now exists)"
)


class Pause(BaseNode):
    """Sleeps for `seconds`, then says how long it slept."""

    class Inputs(BaseModel):
        seconds: str

    class Outputs(BaseModel):
        slept: str

    async def execute(self) -> Outputs:
        await asyncio.sleep(float(self.inputs.seconds))
        return self.Outputs(slept=self.inputs.seconds)


class FailOnce(BaseNode):
    """Fails while the file `marker` does not exist (and creates it), succeeds after."""

    class Inputs(BaseModel):
        marker: str
        text: str

    class Outputs(BaseModel):
        text: str

    async def execute(self) -> Outputs:
        marker = Path(self.inputs.marker)
        if not marker.exists():
            marker.write_text("failed once")
            raise RuntimeError(FIRST_FAILURE)
        return self.Outputs(text=self.inputs.text.upper())


class Say(BaseNode):
    """Says its prompt, then its text (a stand-in for a model call: what it writes follows its inputs)."""

    class Inputs(BaseModel):
        prompt: str
        text: str

    class Outputs(BaseModel):
        said: str

    async def execute(self) -> Outputs:
        return self.Outputs(said=f"{self.inputs.prompt} {self.inputs.text}")


NODES: list[type[BaseNode]] = [Pause, FailOnce, Say]


if __name__ == "__main__":
    Runtime(namespace=sys.argv[1], name="browser-runtime", nodes=NODES, heartbeat_interval=0.5).start()
