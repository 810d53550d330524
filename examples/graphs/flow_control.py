"""Flow control: limits the server keeps for every runtime and replica together.

1. An LLM node limited per API key: at most 2 calls at once and 5 a second for each key, so
   one team's backlog never uses another team's quota (and no key goes over its provider's
   limits, however many runtimes serve the node).

       summarise        concurrency 2 per ${{ store.api_key_name }}
                        rate 5/s (bursts of 5) per ${{ store.api_key_name }}

2. A tenant-fair graph: at most one run RUNNING per tenant; a tenant's other runs wait PENDING
   and start in order, while other tenants' runs start at once.

       fetch ──► report   (graph concurrency: 1 per ${{ store.tenant }})

Run it (with EXOSPHERE_STATE_MANAGER_URI and EXOSPHERE_API_KEY set):

    python -m examples.graphs.flow_control
"""

from __future__ import annotations

import asyncio
import time

from pydantic import BaseModel

from exospherehost import (
    BaseNode,
    ConcurrencyModel,
    GraphNodeModel,
    RateLimitModel,
    Runtime,
    StateManager,
    StoreConfigModel,
)

from ._common import unique_namespace, wait_for_run

RUNNING: dict[str, int] = {}  # in flight now, per key
PEAK: dict[str, int] = {}  # the most in flight at once, per key
STARTED: list[tuple[float, str]] = []  # (when, label)


def _enter(key: str) -> None:
    RUNNING[key] = RUNNING.get(key, 0) + 1
    PEAK[key] = max(PEAK.get(key, 0), RUNNING[key])


class Summarise(BaseNode):
    """Stands in for a call to an LLM provider with the team's API key."""

    class Inputs(BaseModel):
        text: str
        api_key_name: str

    class Outputs(BaseModel):
        summary: str

    async def execute(self) -> Outputs:
        _enter(self.inputs.api_key_name)
        try:
            await asyncio.sleep(0.5)  # the provider's answer
        finally:
            RUNNING[self.inputs.api_key_name] -= 1
        return self.Outputs(summary=self.inputs.text[:12])


def llm_graph(ns: str) -> list[GraphNodeModel]:
    per_key = "${{ store.api_key_name }}"
    return [
        GraphNodeModel(
            node_name="Summarise",
            namespace=ns,
            identifier="summarise",
            inputs={"text": "${{ store.text }}", "api_key_name": per_key},
            concurrency=ConcurrencyModel(limit=2, key=per_key),
            rate_limit=RateLimitModel(per_second=5, burst=5, key=per_key),
        )
    ]


class Fetch(BaseNode):
    class Inputs(BaseModel):
        tenant: str
        label: str

    class Outputs(BaseModel):
        label: str

    async def execute(self) -> Outputs:
        STARTED.append((time.monotonic(), self.inputs.label))
        _enter(f"tenant:{self.inputs.tenant}")
        await asyncio.sleep(0.1)
        return self.Outputs(label=self.inputs.label)


class Report(BaseNode):
    class Inputs(BaseModel):
        tenant: str
        label: str

    class Outputs(BaseModel):
        done: str

    async def execute(self) -> Outputs:
        await asyncio.sleep(0.1)
        RUNNING[f"tenant:{self.inputs.tenant}"] -= 1  # the run's last node ends
        return self.Outputs(done=self.inputs.label)


def tenant_graph(ns: str) -> list[GraphNodeModel]:
    tenant = {"tenant": "${{ store.tenant }}"}
    return [
        GraphNodeModel(
            node_name="Fetch",
            namespace=ns,
            identifier="fetch",
            inputs={**tenant, "label": "${{ store.label }}"},
            next_nodes=["report"],
        ),
        GraphNodeModel(
            node_name="Report",
            namespace=ns,
            identifier="report",
            inputs={**tenant, "label": "${{ fetch.outputs.label }}"},
        ),
    ]


TENANT_FAIR = ConcurrencyModel(limit=1, key="${{ store.tenant }}")


async def main() -> dict[str, object]:
    """Both graphs with two runtimes each; what ran at once, and in which order."""
    for seen in (RUNNING, PEAK, STARTED):
        seen.clear()
    ns = unique_namespace("flow")
    nodes = [Summarise, Fetch, Report]
    async with (
        Runtime(ns, "runtime-1", nodes, workers=8),
        Runtime(ns, "runtime-2", nodes, workers=8),
        StateManager(ns) as client,
    ):
        await client.upsert_graph(
            "summaries",
            llm_graph(ns),
            secrets={},
            store_config=StoreConfigModel(required_keys=["text", "api_key_name"]),
        )
        await client.upsert_graph(
            "tenant-report",
            tenant_graph(ns),
            secrets={},
            store_config=StoreConfigModel(required_keys=["tenant", "label"]),
            concurrency=TENANT_FAIR,
        )
        summaries = [
            await client.trigger("summaries", store={"text": f"document {i}", "api_key_name": team})
            for i, team in enumerate(["team-a"] * 6 + ["team-b"] * 2)
        ]
        reports = [
            await client.trigger("tenant-report", store={"tenant": tenant, "label": label})
            for tenant, label in [("big", "big-1"), ("big", "big-2"), ("big", "big-3"), ("small", "small-1")]
        ]
        for run in [*summaries, *reports]:
            await wait_for_run(client, run["run_id"], max_wait=30)
    order = [label for _, label in sorted(STARTED)]
    return {
        "llm_peak": {key: PEAK[key] for key in ("team-a", "team-b")},
        "tenant_peak": {key: PEAK[key] for key in ("tenant:big", "tenant:small")},
        "small_before_big_3": order.index("small-1") < order.index("big-3"),
        "big_in_order": [label for label in order if label.startswith("big")],
    }


if __name__ == "__main__":
    print(asyncio.run(main()))
