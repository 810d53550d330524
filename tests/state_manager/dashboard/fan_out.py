"""A run of a wide fan-out, played over the API as its runtimes would: `start` begins, `split`
fans out into N branches (N states of split, one per output), `leaf` runs each (the chosen ones
fail), `report` joins them all (ALL_DONE, so it runs despite a failed branch). The identifiers
sort by name (leaf, report, split, start) otherwise than by time (start, split, leaf, report).
For the timeline of a large run, over HTTP and in Chromium."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from tests.factories import NAMESPACE, Api, Json, graph, node, template

START = node("Start")
SPLIT = node("Split", outputs=["n"])
LEAF = node("Leaf", inputs=["n"], outputs=["y"])
REPORT = node("Report", inputs=["values"], outputs=["total"])
NODES = (START, SPLIT, LEAF, REPORT)


def fan_graph(*, join: bool = True, namespace: str = NAMESPACE) -> Json:
    """The graph; without `report` when not `join` (each branch's report then costs less: no
    join to re-evaluate)."""
    nodes = [
        template("start", "Start", {"x": "go"}, ["split"], namespace=namespace),
        template("split", "Split", {"x": "${{ start.outputs.y }}"}, ["leaf"], namespace=namespace),
        template("leaf", "Leaf", {"n": "${{ split.outputs.n }}"}, namespace=namespace),
    ]
    if join:
        values = {"values": "${{ leaf.outputs.y[*] }}"}
        join_node = template(
            "report", "Report", values, unites="start", strategy="ALL_DONE", namespace=namespace
        )
        nodes.append(join_node)
    return graph(*nodes, retry_policy={"max_retries": 0})


async def play(
    api: Api, *, branches: int = 200, batch: int = 25, pause: float = 0.0, failing: Collection[str] = ()
) -> None:
    """Run the start and the split, then the branches `batch` at a time (`pause` s before each
    batch's reports), then the join: a run's work spread over time as a pool of workers would."""
    (start,) = await api.claim("Start", batch_size=1)
    await api.executed(start["state_id"], [{"y": "go"}])
    (split,) = await api.claim("Split", batch_size=1)
    await api.executed(split["state_id"], [{"n": str(i)} for i in range(branches)])
    while claimed := await api.claim("Leaf", batch_size=batch):
        await asyncio.sleep(pause)
        for state in claimed:
            if state["inputs"]["n"] in failing:
                await api.errored(state["state_id"], f"leaf {state['inputs']['n']} is broken")
            else:
                await api.executed(state["state_id"], [{"y": state["inputs"]["n"]}])
    for state in await api.claim("Report"):
        await api.executed(state["state_id"], [{"total": "done"}])
