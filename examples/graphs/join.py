"""Joins: `report` runs once, after every branch below `plan` has finished.

    plan ──► split ──► check      (one `check` per item)
      └──────────────────────────► report   (unites: plan)

Run it (with EXOSPHERE_STATE_MANAGER_URI and EXOSPHERE_API_KEY set):

    python -m examples.graphs.join
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from exospherehost import (
    BaseNode,
    GraphNodeModel,
    RetryPolicyModel,
    Runtime,
    StateManager,
    UnitesModel,
    UnitesStrategyEnum,
)

from ._common import of, run_status, unique_namespace, wait_for_run


class Plan(BaseNode):
    class Inputs(BaseModel):
        topic: str
        items: str

    class Outputs(BaseModel):
        topic: str
        items: str

    async def execute(self) -> Outputs:
        return self.Outputs(topic=self.inputs.topic.title(), items=self.inputs.items)


class Split(BaseNode):
    class Inputs(BaseModel):
        items: str

    class Outputs(BaseModel):
        item: str

    async def execute(self) -> list[Outputs]:
        return [self.Outputs(item=item) for item in self.inputs.items.split()]


class Check(BaseNode):
    class Inputs(BaseModel):
        item: str

    class Outputs(BaseModel):
        item: str

    async def execute(self) -> Outputs:
        if self.inputs.item == "bad":
            raise ValueError("item 'bad' failed its check")
        return self.Outputs(item=self.inputs.item)


class Report(BaseNode):
    class Inputs(BaseModel):
        topic: str

    class Outputs(BaseModel):
        summary: str

    async def execute(self) -> Outputs:
        return self.Outputs(summary=f"{self.inputs.topic}: every branch finished")


def join_graph(ns: str, strategy: UnitesStrategyEnum) -> list[GraphNodeModel]:
    return [
        GraphNodeModel(
            node_name="Plan",
            namespace=ns,
            identifier="plan",
            inputs={"topic": "weekly review", "items": "a b c"},
            next_nodes=["split"],
        ),
        GraphNodeModel(
            node_name="Split",
            namespace=ns,
            identifier="split",
            inputs={"items": "${{ plan.outputs.items }}"},
            next_nodes=["check"],
        ),
        GraphNodeModel(
            node_name="Check",
            namespace=ns,
            identifier="check",
            inputs={"item": "${{ split.outputs.item }}"},
        ),
        GraphNodeModel(
            node_name="Report",
            namespace=ns,
            identifier="report",
            # A join may read its anchor (`plan`), the anchor's ancestors and the store.
            inputs={"topic": "${{ plan.outputs.topic }}"},
            unites=UnitesModel(identifier="plan", strategy=strategy),
        ),
    ]


async def main() -> dict[str, dict[str, Any]]:
    """Three runs: all branches succeed, one fails under ALL_SUCCESS, one fails under ALL_DONE."""
    ns = unique_namespace("join")
    no_retries = RetryPolicyModel(max_retries=0)  # let `check` fail at once
    nodes = [Plan, Split, Check, Report]
    async with Runtime(ns, "join-runtime", nodes, workers=4), StateManager(ns) as client:
        await client.upsert_graph(
            "all-success", join_graph(ns, UnitesStrategyEnum.ALL_SUCCESS), secrets={}, retry_policy=no_retries
        )
        await client.upsert_graph(
            "all-done", join_graph(ns, UnitesStrategyEnum.ALL_DONE), secrets={}, retry_policy=no_retries
        )
        runs = {
            "all_success_ok": await client.trigger("all-success"),
            "all_success_failed": await client.trigger("all-success", inputs={"items": "a bad c"}),
            "all_done_failed": await client.trigger("all-done", inputs={"items": "a bad c"}),
        }
        results: dict[str, dict[str, Any]] = {}
        for label, run in runs.items():
            states = await wait_for_run(client, run["run_id"])
            report = of(states, "report")
            results[label] = {
                "run": await run_status(client, run["run_id"]),
                "checks": sorted(s["status"] for s in of(states, "check")),
                "reports": [(s["status"], s["outputs"].get("summary") or s["error"]) for s in report],
            }
        return results


if __name__ == "__main__":
    print(asyncio.run(main()))
