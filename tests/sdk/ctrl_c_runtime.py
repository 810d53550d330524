"""A worker process for `test_ctrl_c.py`: `Runtime.start()` serving one slow node.

Usage: `python ctrl_c_runtime.py <state manager URI> <seconds the node sleeps>`.

Prints `started` when the node starts and `exited` when `start()` returns. Logging is left
unconfigured, as in a plain script: the runtime's default output (its log lines on stderr) is
what a user pressing Ctrl-C sees.
"""

from __future__ import annotations

import asyncio
import sys

from pydantic import BaseModel

from exospherehost import BaseNode, Runtime


class Slow(BaseNode):
    class Outputs(BaseModel):
        slept: str

    async def execute(self) -> Outputs:
        print("started", flush=True)
        await asyncio.sleep(float(sys.argv[2]))
        return self.Outputs(slept=sys.argv[2])


def main() -> None:
    runtime = Runtime(
        "ns",
        "ctrl-c",
        [Slow],
        state_manager_uri=sys.argv[1],
        key="k",
        poll_interval=0.05,
        long_poll_ms=0,
        heartbeat_interval=None,
    )
    runtime.start()
    print("exited", flush=True)


if __name__ == "__main__":
    main()
