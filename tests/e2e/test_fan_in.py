"""Map-reduce with our SDK against a real server: the join receives its branches' results in
fan-out order, also after a retried branch, and under ALL_DONE without the failed ones."""

from __future__ import annotations

import json
import uuid

import pytest
from pydantic import BaseModel

from exospherehost import (
    BaseNode,
    GraphNodeModel,
    RetryPolicyModel,
    RetryStrategyEnum,
    Runtime,
    StateManager,
    UnitesModel,
    UnitesStrategyEnum,
)
from tests.e2e.conftest import by_identifier, wait_run
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.e2e

ATTEMPTS: dict[str, int] = {}


class Start(BaseNode):
    class Inputs(BaseModel):
        items: str

    class Outputs(BaseModel):
        items: str

    async def execute(self) -> Outputs:
        return self.Outputs(items=self.inputs.items)


class Items(BaseNode):
    class Inputs(BaseModel):
        items: str

    class Outputs(BaseModel):
        item: str

    async def execute(self) -> list[Outputs]:
        return [self.Outputs(item=item) for item in self.inputs.items.split()]


class Square(BaseNode):
    """Squares its item; "flaky-N" fails on its first attempt, "bad-N" always."""

    class Inputs(BaseModel):
        item: str
        run: str

    class Outputs(BaseModel):
        squared: str

    async def execute(self) -> Outputs:
        key = f"{self.inputs.run}:{self.inputs.item}"
        ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
        kind, _, number = self.inputs.item.rpartition("-")
        if kind == "bad" or (kind == "flaky" and ATTEMPTS[key] == 1):
            raise RuntimeError(f"{self.inputs.item} failed")
        return self.Outputs(squared=str(int(number) ** 2))


class Collect(BaseNode):
    class Inputs(BaseModel):
        squares: str

    class Outputs(BaseModel):
        squares: str

    async def execute(self) -> Outputs:
        return self.Outputs(squares=" ".join(json.loads(self.inputs.squares)))


def _graph(ns: str, tag: str, strategy: UnitesStrategyEnum) -> list[GraphNodeModel]:
    return [
        GraphNodeModel(
            node_name="Start", namespace=ns, identifier="start", inputs={"items": "x"}, next_nodes=["items"]
        ),
        GraphNodeModel(
            node_name="Items",
            namespace=ns,
            identifier="items",
            inputs={"items": "${{ start.outputs.items }}"},
            next_nodes=["square"],
        ),
        GraphNodeModel(
            node_name="Square",
            namespace=ns,
            identifier="square",
            inputs={"item": "${{ items.outputs.item }}", "run": tag},
        ),
        GraphNodeModel(
            node_name="Collect",
            namespace=ns,
            identifier="collect",
            inputs={"squares": "${{ square.outputs.squared[*] }}"},
            unites=UnitesModel(identifier="start", strategy=strategy),
        ),
    ]


async def _collected(ns: str, items: str, strategy: UnitesStrategyEnum) -> tuple[str, str]:
    tag = uuid.uuid4().hex[:6]
    retry = RetryPolicyModel(max_retries=1, strategy=RetryStrategyEnum.FIXED, backoff_factor=50)
    async with StateManager(ns) as client:
        await client.upsert_graph(f"mr-{tag}", _graph(ns, tag, strategy), secrets={}, retry_policy=retry)
        run = await client.trigger(f"mr-{tag}", inputs={"items": items})
        states = await wait_run(client, run["run_id"])
        runs = (await client.list_runs(1, 50))["runs"]
    [collect] = by_identifier(states, "collect")
    status = next(r["status"] for r in runs if r["run_id"] == run["run_id"])
    return collect["outputs"].get("squares", ""), status


async def test_the_join_collects_in_fan_out_order_after_a_retried_branch(sdk_env: LiveServer) -> None:
    ns = f"fanin-{uuid.uuid4().hex[:8]}"
    async with Runtime(ns, "fan-in", [Start, Items, Square, Collect], workers=8):
        squares, status = await _collected(ns, "n-5 flaky-3 n-1 n-4", UnitesStrategyEnum.ALL_SUCCESS)
        done_squares, done_status = await _collected(ns, "n-2 bad-7 n-3", UnitesStrategyEnum.ALL_DONE)

    assert (squares, status) == ("25 9 1 16", "SUCCESS")
    assert (done_squares, done_status) == ("4 9", "FAILED")  # the failed branch is left out
