"""Benchmarks: `make bench` (or `python -m benchmarks.run`). Prints a Markdown table.

Each scenario starts a fresh state manager (`python -m state_manager`, embedded in-memory store)
on a loopback port and drives it with our SDK's Runtime in this process. Numbers depend on the
machine; RESULTS.md records what was measured and where.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from pydantic import BaseModel

from exospherehost import BaseNode, GraphNodeModel, Runtime, StateManager, StoreConfigModel
from tests.support.durable_store import durable_store
from tests.support.live_server import LiveServer, running_server

STARTED: dict[str, float] = {}
KEYED = StoreConfigModel(required_keys=["k"])


class Stamp(BaseNode):
    """Records when it started; the benchmark compares that with the trigger time."""

    class Inputs(BaseModel):
        key: str

    class Outputs(BaseModel):
        key: str

    async def execute(self) -> Outputs:
        STARTED[self.inputs.key] = time.perf_counter()
        return self.Outputs(key=self.inputs.key)


class Spread(BaseNode):
    class Inputs(BaseModel):
        count: str

    class Outputs(BaseModel):
        key: str

    async def execute(self) -> list[Outputs]:
        return [self.Outputs(key=f"k{i}") for i in range(int(self.inputs.count))]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _wait_for(check: Callable[[], Awaitable[bool]], limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark did not finish")
        await asyncio.sleep(0.1)


def _clients(server: LiveServer, ns: str, **runtime_args: Any) -> tuple[Runtime, StateManager]:
    args = {"state_manager_uri": server.base_url, "key": server.api_key}
    return Runtime(ns, "bench", runtime_args.pop("nodes"), **args, **runtime_args), StateManager(ns, **args)


async def start_latency(server: LiveServer, runs: int, **runtime_args: Any) -> dict[str, float]:
    """Trigger one-node runs one at a time; time from the trigger's answer to the node starting."""
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    runtime, client = _clients(server, ns, nodes=[Stamp], **runtime_args)
    graph = [
        GraphNodeModel(node_name="Stamp", namespace=ns, identifier="s", inputs={"key": "${{ store.k }}"})
    ]
    latencies: list[float] = []
    async with runtime, client:
        await client.upsert_graph("latency", graph, secrets={}, store_config=KEYED)
        for i in range(runs):
            key = f"{ns}-{i}"
            await client.trigger("latency", store={"k": key})
            triggered = time.perf_counter()

            async def started(key: str = key) -> bool:
                return key in STARTED

            await _wait_for(started)
            latencies.append((STARTED[key] - triggered) * 1000)
    return {"p50_ms": statistics.median(latencies), "p95_ms": _percentile(latencies, 0.95)}


async def throughput(server: LiveServer, runs: int) -> dict[str, float]:
    """Trigger `runs` one-node runs at once; states completed per second."""
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    runtime, client = _clients(server, ns, nodes=[Stamp], workers=16, batch_size=16)
    graph = [
        GraphNodeModel(node_name="Stamp", namespace=ns, identifier="s", inputs={"key": "${{ store.k }}"})
    ]
    async with runtime, client:
        await client.upsert_graph("throughput", graph, secrets={}, store_config=KEYED)
        began = time.perf_counter()
        await asyncio.gather(*(client.trigger("throughput", store={"k": f"{ns}-{i}"}) for i in range(runs)))

        async def done() -> bool:
            return sum(key.startswith(ns) for key in STARTED) >= runs

        await _wait_for(done)
        await _wait_for(lambda: _all_finished(client, runs))
        elapsed = time.perf_counter() - began
    return {"states_per_s": runs / elapsed, "seconds": elapsed}


async def _all_finished(client: StateManager, runs: int) -> bool:
    page = await client.list_runs(1, runs)
    return sum(r["status"] == "SUCCESS" for r in page["runs"]) >= runs


async def fan_out(server: LiveServer, width: int) -> dict[str, float]:
    """One node returns `width` outputs; each feeds a child. Time until all children finished."""
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    runtime, client = _clients(server, ns, nodes=[Spread, Stamp], workers=16, batch_size=16)
    graph = [
        GraphNodeModel(
            node_name="Spread", namespace=ns, identifier="a", inputs={"count": str(width)}, next_nodes=["b"]
        ),
        GraphNodeModel(
            node_name="Stamp", namespace=ns, identifier="b", inputs={"key": "${{ a.outputs.key }}"}
        ),
    ]
    async with runtime, client:
        await client.upsert_graph("fan", graph, secrets={})
        began = time.perf_counter()
        await client.trigger("fan")
        await _wait_for(lambda: _all_finished(client, 1))
        elapsed = time.perf_counter() - began
    return {"seconds": elapsed, "states": 2 * width}


async def idle_requests(server: LiveServer, seconds: float, **runtime_args: Any) -> dict[str, float]:
    """Requests an idle runtime sends per minute (counted by a transport wrapper)."""
    count = 0

    async def on_request(_: httpx.Request) -> None:
        nonlocal count
        count += 1

    transport = _CountingTransport(on_request)
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    runtime = Runtime(
        ns,
        "idle",
        [Stamp],
        state_manager_uri=server.base_url,
        key=server.api_key,
        transport=transport,
        **runtime_args,
    )
    async with runtime:
        count = 0  # registration does not count
        await asyncio.sleep(seconds)
    return {"requests_per_min": count * 60 / seconds}


class _CountingTransport(httpx.AsyncBaseTransport):
    def __init__(self, hook: Callable[[httpx.Request], Awaitable[None]]) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._hook = hook

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self._hook(request)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


UPSTREAM_LIKE = {"long_poll_ms": 0, "poll_interval": 1}


def _server(mongo_uri: str | None) -> contextlib.AbstractContextManager[LiveServer]:
    if mongo_uri is None:
        return running_server()
    return running_server(MONGO_URI=mongo_uri, MONGO_DATABASE_NAME=f"bench{uuid.uuid4().hex[:8]}")


async def main(quick: bool, mongo_uri: str | None) -> None:
    runs = 20 if quick else 100
    rows: list[tuple[str, str]] = []
    with _server(mongo_uri) as server:
        lp = await start_latency(server, runs)
        rows.append(
            (
                "trigger -> node start, long-poll (default)",
                f"p50 {lp['p50_ms']:.1f} ms, p95 {lp['p95_ms']:.1f} ms",
            )
        )
        up = await start_latency(server, min(runs, 20), **UPSTREAM_LIKE)
        rows.append(
            (
                "trigger -> node start, 1 s polling (upstream-like)",
                f"p50 {up['p50_ms']:.1f} ms, p95 {up['p95_ms']:.1f} ms",
            )
        )
        idle = await idle_requests(server, 6 if quick else 25)
        rows.append(("idle runtime, long-poll (default)", f"{idle['requests_per_min']:.1f} requests/min"))
        idle_up = await idle_requests(server, 6, **UPSTREAM_LIKE)
        rows.append(
            ("idle runtime, 1 s polling (upstream-like)", f"{idle_up['requests_per_min']:.1f} requests/min")
        )
    with _server(mongo_uri) as server:
        tp = await throughput(server, 50 if quick else 200)
        rows.append((f"one-node runs, {50 if quick else 200} at once", f"{tp['states_per_s']:.0f} states/s"))
    with _server(mongo_uri) as server:
        fo = await fan_out(server, 50 if quick else 200)
        rows.append((f"fan-out: {int(fo['states'])} states", f"{fo['seconds']:.2f} s"))
    print("| scenario | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    store = parser.add_mutually_exclusive_group()
    store.add_argument(
        "--mongo-uri", help="run the servers against this MongoDB instead of the embedded store"
    )
    store.add_argument(
        "--nx", action="store_true", help="run against nx-27017 (MongoDB wire protocol on SQLite)"
    )
    options = parser.parse_args()
    if options.nx:
        with durable_store() as uri:
            asyncio.run(main(options.quick, uri))
    else:
        asyncio.run(main(options.quick, options.mongo_uri))
