"""Forking a run with our runtime against a real server (issue 17): reused nodes are not executed
again, the nodes forked from and everything below them are, with the inputs given."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from exospherehost import BaseNode, GraphNodeModel, Runtime, StateManager, UnitesModel
from tests.e2e.conftest import by_identifier, wait_run
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.e2e

EXECUTED: Counter[str] = Counter()


class Start(BaseNode):
    class Inputs(BaseModel):
        items: str

    class Outputs(BaseModel):
        items: str

    async def execute(self) -> Outputs:
        EXECUTED["start"] += 1
        return self.Outputs(items=self.inputs.items)


class Items(BaseNode):
    class Inputs(BaseModel):
        items: str

    class Outputs(BaseModel):
        item: str

    async def execute(self) -> list[Outputs]:
        EXECUTED["items"] += 1
        return [self.Outputs(item=item) for item in self.inputs.items.split()]


class Power(BaseNode):
    class Inputs(BaseModel):
        item: str
        exponent: str

    class Outputs(BaseModel):
        value: str

    async def execute(self) -> Outputs:
        EXECUTED["power"] += 1
        return self.Outputs(value=str(int(self.inputs.item) ** int(self.inputs.exponent)))


class Total(BaseNode):
    class Inputs(BaseModel):
        values: str

    class Outputs(BaseModel):
        total: str

    async def execute(self) -> Outputs:
        EXECUTED["total"] += 1
        return self.Outputs(total=str(sum(int(v) for v in json.loads(self.inputs.values))))


def _graph(ns: str) -> list[GraphNodeModel]:
    return [
        GraphNodeModel(
            node_name="Start", namespace=ns, identifier="start", inputs={"items": "x"}, next_nodes=["items"]
        ),
        GraphNodeModel(
            node_name="Items",
            namespace=ns,
            identifier="items",
            inputs={"items": "${{ start.outputs.items }}"},
            next_nodes=["power"],
        ),
        GraphNodeModel(
            node_name="Power",
            namespace=ns,
            identifier="power",
            inputs={"item": "${{ items.outputs.item }}", "exponent": "2"},
        ),
        GraphNodeModel(
            node_name="Total",
            namespace=ns,
            identifier="total",
            inputs={"values": "${{ power.outputs.value[*] }}"},
            unites=UnitesModel(identifier="start"),
        ),
    ]


async def _fork(server: LiveServer, ns: str, run_id: str, body: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.base_url, headers={"x-api-key": server.api_key}) as http:
        answer = await http.post(f"/v0/namespace/{ns}/run/{run_id}/fork", json=body)
    assert answer.status_code == 201, answer.text
    forked: dict[str, Any] = answer.json()
    return forked


async def test_a_fork_runs_only_what_is_below_the_nodes_it_is_forked_from(sdk_env: LiveServer) -> None:
    ns = f"fork-{uuid.uuid4().hex[:8]}"
    EXECUTED.clear()
    async with Runtime(ns, "forks", [Start, Items, Power, Total], workers=4), StateManager(ns) as client:
        await client.upsert_graph("powers", _graph(ns), secrets={})
        original = (await client.trigger("powers", inputs={"items": "1 2 3"}))["run_id"]
        states = await wait_run(client, original, min_states=8)
        assert by_identifier(states, "total")[0]["outputs"] == {"total": "14"}
        assert Counter(start=1, items=1, power=3, total=1) == EXECUTED

        forked = await _fork(
            sdk_env, ns, original, {"from": ["power"], "inputs": {"power": {"exponent": "3"}}}
        )
        states = await wait_run(client, forked["run_id"], min_states=8)

    assert forked["reused"] == 4  # start, items and its two copies
    assert Counter(start=1, items=1, power=6, total=2) == EXECUTED  # the reused nodes did not run again
    assert by_identifier(states, "total")[0]["outputs"] == {"total": "36"}
    reused = [s for s in states if s.get("reused_from")]
    assert sorted(s["identifier"] for s in reused) == ["items", "items", "items", "start"]
