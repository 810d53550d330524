"""Which httpx transport our SDK should use: `python -m benchmarks.transport [--quick]`.

Against a real state manager (on nx-27017, both on 127.0.0.1), in this process, for each
transport (httpx's own `AsyncHTTPTransport` and `httpx_aiohttp.AiohttpTransport`):

1. raw: `GET /health` from 16 concurrent callers, and one caller in sequence (round trip);
2. hot path: a `Runtime` (16 workers, batch 16) drains pre-triggered one-node runs: the SDK's
   own enqueue + executed calls, nothing else. The server is the bottleneck there, so the figure
   to compare is the client's CPU per execution (this process's CPU time; it runs nothing else).

Transports are measured alternately, several rounds, and the medians are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel

from benchmarks.processes import Server, install_sigterm_handler, nx_store, state_manager
from exospherehost import BaseNode, GraphNodeModel, Runtime, StateManager
from exospherehost._http import AiohttpTransport, ApiClient, default_transport
from exospherehost.node import registration_entry


class Noop(BaseNode):
    class Inputs(BaseModel):
        key: str

    class Outputs(BaseModel):
        key: str

    async def execute(self) -> Outputs:
        return self.Outputs(key=self.inputs.key)


# httpx's own transport, and what the SDK uses by default (httpx over aiohttp when installed).
TRANSPORTS: dict[str, Callable[[], httpx.AsyncBaseTransport]] = {"httpx": httpx.AsyncHTTPTransport}
if AiohttpTransport is not None:
    TRANSPORTS["httpx-aiohttp (SDK default)"] = default_transport


class _Counting(httpx.AsyncBaseTransport):
    """Counts requests and reports; sets `done` after `expected` executed reports."""

    def __init__(self, inner: httpx.AsyncBaseTransport, expected: int) -> None:
        self.inner = inner
        self.requests = 0
        self.executed = 0
        self.expected = expected
        self.done = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        response = await self.inner.handle_async_request(request)
        if request.url.path.endswith("/executed"):
            self.executed += 1
            if self.executed >= self.expected:
                self.done.set()
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def raw(server: Server, make: Callable[[], httpx.AsyncBaseTransport], total: int) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=server.base_url, transport=make()) as client:
        await client.get("/health")  # connect outside the timing
        sequential = []
        for _ in range(200):
            began = time.perf_counter()
            await client.get("/health")
            sequential.append(time.perf_counter() - began)
        remaining = total

        async def caller() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                (await client.get("/health")).raise_for_status()

        cpu, began = time.process_time(), time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(16)))
        wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    return {
        "requests_per_s": total / wall,
        "cpu_ms_per_request": cpu / total * 1000,
        "round_trip_ms": statistics.median(sequential) * 1000,
    }


async def hot_path(
    server: Server, make: Callable[[], httpx.AsyncBaseTransport], runs: int
) -> dict[str, float]:
    ns = f"tp-{uuid.uuid4().hex[:8]}"
    setup = ApiClient(base_url=server.base_url, api_key=server.api_key, namespace=ns)
    await setup.register_nodes("setup", ns, [registration_entry(Noop, ns)])
    await setup.aclose()
    async with StateManager(ns, server.base_url, server.api_key) as sm:
        graph = [GraphNodeModel(node_name="Noop", namespace=ns, identifier="n", inputs={"key": "x"})]
        await sm.upsert_graph("g", graph, secrets={}, polling_interval=0.05)
        semaphore = asyncio.Semaphore(16)

        async def trigger() -> None:
            async with semaphore:
                await sm.trigger("g")

        await asyncio.gather(*(trigger() for _ in range(runs)))
    counting = _Counting(make(), runs)
    runtime = Runtime(
        ns, "tp", [Noop], server.base_url, server.api_key, workers=16, batch_size=16, transport=counting
    )
    cpu, began = time.process_time(), time.perf_counter()
    async with runtime:
        await asyncio.wait_for(counting.done.wait(), 300)
        wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    return {
        "executions_per_s": runs / wall,
        "requests_per_s": counting.requests / wall,
        "requests_per_execution": counting.requests / runs,
        "cpu_ms_per_execution": cpu / runs * 1000,
    }


def _median_rows(results: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    return {
        name: {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
        for name, rounds in results.items()
    }


async def measure(server: Server, rounds: int, raw_total: int, runs: int) -> dict[str, Any]:
    raw_results: dict[str, list[dict[str, float]]] = {name: [] for name in TRANSPORTS}
    hot_results: dict[str, list[dict[str, float]]] = {name: [] for name in TRANSPORTS}
    for index in range(rounds):
        order = list(TRANSPORTS) if index % 2 == 0 else list(reversed(TRANSPORTS))
        for name in order:
            raw_results[name].append(await raw(server, TRANSPORTS[name], raw_total))
            hot_results[name].append(await hot_path(server, TRANSPORTS[name], runs))
            print(f"transport {name}: round {index + 1}/{rounds} done", file=sys.stderr, flush=True)
    return {"raw": _median_rows(raw_results), "hot_path": _median_rows(hot_results)}


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| transport | /health req/s (16 callers) | client CPU ms/request | round trip ms "
        "| hot path executions/s | requests/s | client CPU ms/execution |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in result["raw"]:
        r, h = result["raw"][name], result["hot_path"][name]
        lines.append(
            f"| {name} | {r['requests_per_s']:.0f} | {r['cpu_ms_per_request']:.2f} | "
            f"{r['round_trip_ms']:.2f} | {h['executions_per_s']:.0f} | {h['requests_per_s']:.0f} | "
            f"{h['cpu_ms_per_execution']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    install_sigterm_handler()
    rounds, raw_total, runs = (2, 1000, 100) if options.quick else (3, 3000, 300)
    with tempfile.TemporaryDirectory(prefix="exosphere-bench-") as folder:
        workdir = Path(folder)
        with nx_store(workdir) as store, state_manager(workdir / "server", store.uri) as server:
            result = asyncio.run(measure(server, rounds, raw_total, runs))
    print(markdown(result))


if __name__ == "__main__":
    main()
