"""Map-reduce: fan out over items, square each one, and let a join sum the squares.

    numbers ──► split ──► square      (one `square` per item)
       └─────────────────────────────► total   (unites: numbers; collects square.outputs.squared[*])

Run it (with EXOSPHERE_STATE_MANAGER_URI and EXOSPHERE_API_KEY set):

    python -m examples.graphs.map_reduce
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pydantic import BaseModel

from exospherehost import BaseNode, GraphNodeModel, Runtime, StateManager, UnitesModel

from ._common import of, run_status, unique_namespace, wait_for_run


class Numbers(BaseNode):
    class Inputs(BaseModel):
        numbers: str

    class Outputs(BaseModel):
        numbers: str

    async def execute(self) -> Outputs:
        return self.Outputs(numbers=self.inputs.numbers)


class Split(BaseNode):
    class Inputs(BaseModel):
        numbers: str

    class Outputs(BaseModel):
        number: str

    async def execute(self) -> list[Outputs]:
        return [self.Outputs(number=number) for number in self.inputs.numbers.split()]


class Square(BaseNode):
    class Inputs(BaseModel):
        number: str

    class Outputs(BaseModel):
        squared: str

    async def execute(self) -> Outputs:
        return self.Outputs(squared=str(int(self.inputs.number) ** 2))


class Total(BaseNode):
    class Inputs(BaseModel):
        squares: str  # a JSON array, one entry per `square`, in the order of the numbers

    class Outputs(BaseModel):
        total: str
        squares: str

    async def execute(self) -> Outputs:
        squares = json.loads(self.inputs.squares)
        return self.Outputs(total=str(sum(int(s) for s in squares)), squares=" ".join(squares))


def map_reduce_graph(ns: str) -> list[GraphNodeModel]:
    return [
        GraphNodeModel(
            node_name="Numbers",
            namespace=ns,
            identifier="numbers",
            inputs={"numbers": "1 2 3"},
            next_nodes=["split"],
        ),
        GraphNodeModel(
            node_name="Split",
            namespace=ns,
            identifier="split",
            inputs={"numbers": "${{ numbers.outputs.numbers }}"},
            next_nodes=["square"],
        ),
        GraphNodeModel(
            node_name="Square",
            namespace=ns,
            identifier="square",
            inputs={"number": "${{ split.outputs.number }}"},
        ),
        GraphNodeModel(
            node_name="Total",
            namespace=ns,
            identifier="total",
            # `[*]`: `squared` of every `square` below `numbers`, as a JSON array, in fan-out order.
            inputs={"squares": "${{ square.outputs.squared[*] }}"},
            unites=UnitesModel(identifier="numbers"),
        ),
    ]


async def main() -> dict[str, Any]:
    ns = unique_namespace("map-reduce")
    nodes = [Numbers, Split, Square, Total]
    async with Runtime(ns, "map-reduce-runtime", nodes, workers=4), StateManager(ns) as client:
        await client.upsert_graph("map-reduce", map_reduce_graph(ns), secrets={})
        run = await client.trigger("map-reduce", inputs={"numbers": "4 1 3 2"})
        states = await wait_for_run(client, run["run_id"])
        [total] = of(states, "total")
        return {
            "run": await run_status(client, run["run_id"]),
            "squares": len(of(states, "square")),
            "total": total["outputs"],
        }


if __name__ == "__main__":
    print(asyncio.run(main()))
