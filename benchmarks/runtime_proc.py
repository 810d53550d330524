"""A benchmark runtime process: serves the benchmark nodes with one SDK until stdin closes.

Runs under either SDK, so it imports nothing but the standard library, pydantic and
`exospherehost` (ours from this repository's venv, or the official release from its own
Python 3.12 venv: see `benchmarks/official.py`). Started by `benchmarks/workloads.py` as

    python benchmarks/runtime_proc.py --sdk ours|official --namespace NS --workers 16 --batch 16

with `EXOSPHERE_STATE_MANAGER_URI` and `EXOSPHERE_API_KEY` in the environment.

Protocol (stdout lines, written by this process only):
  E <node> <key> <start> <end>   one per node execution (wall-clock seconds, time.time())
  C <requests>                   answer to a "count" line on stdin: HTTP requests sent so far
stdin: a "count" line asks for C; end of file stops the runtime and exits.
"""

import argparse
import asyncio
import os
import sys
import threading
import time

from pydantic import BaseModel

import exospherehost
from exospherehost import BaseNode, Runtime

_out_lock = threading.Lock()
REQUESTS = 0


def emit(line):
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Step(BaseNode):
    """One link of a chain (and the join, and a fan-out leaf): passes its key on."""

    class Inputs(BaseModel):
        key: str

    class Outputs(BaseModel):
        key: str

    async def execute(self):
        started = time.time()
        result = self.Outputs(key=self.inputs.key)
        emit(f"E Step {self.inputs.key} {started:.6f} {time.time():.6f}")
        return result


class Spread(BaseNode):
    """The fan-out: `count` outputs, keys `<key>.<i>`."""

    class Inputs(BaseModel):
        key: str
        count: str

    class Outputs(BaseModel):
        key: str

    async def execute(self):
        started = time.time()
        outputs = [self.Outputs(key=f"{self.inputs.key}.{i}") for i in range(int(self.inputs.count))]
        emit(f"E Spread {self.inputs.key} {started:.6f} {time.time():.6f}")
        return outputs


NODES = [Step, Spread]


def _count_official_requests():
    """The official SDK sends with aiohttp: count every request its sessions make."""
    import aiohttp

    original = aiohttp.ClientSession._request

    def counted(self, *args, **kwargs):
        global REQUESTS
        REQUESTS += 1
        return original(self, *args, **kwargs)

    aiohttp.ClientSession._request = counted


def _our_counting_transport():
    """Our SDK takes a transport: wrap its default one to count requests."""
    import httpx

    from exospherehost._http import default_transport

    class Counting(httpx.AsyncBaseTransport):
        def __init__(self):
            self._inner = default_transport()

        async def handle_async_request(self, request):
            global REQUESTS
            REQUESTS += 1
            return await self._inner.handle_async_request(request)

        async def aclose(self):
            await self._inner.aclose()

    return Counting()


def _watch_stdin(loop, stop):
    try:
        for line in sys.stdin:
            if line.strip() == "count":
                emit(f"C {REQUESTS}")
    finally:
        loop.call_soon_threadsafe(stop.set)


async def main(options):
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    threading.Thread(target=_watch_stdin, args=(loop, stop), daemon=True).start()
    if options.sdk == "official":
        _count_official_requests()
        runtime = Runtime(
            namespace=options.namespace,
            name="bench",
            nodes=NODES,
            batch_size=options.batch,
            workers=options.workers,
            poll_interval=options.poll_interval,
        )
        task = runtime.start()
        await stop.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    else:
        runtime = Runtime(
            options.namespace,
            "bench",
            NODES,
            batch_size=options.batch,
            workers=options.workers,
            transport=_our_counting_transport(),
        )
        task = runtime.start()
        await stop.wait()
        await runtime.shutdown(grace_period=2)
        await asyncio.gather(task, return_exceptions=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--sdk", choices=["ours", "official"], required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--poll-interval", type=float, default=0)
    args = parser.parse_args()
    sys.stderr.write(f"exospherehost {exospherehost.__file__} pid {os.getpid()}\n")
    asyncio.run(main(args))
