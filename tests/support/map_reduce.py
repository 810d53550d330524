"""A map-reduce over the API, played by a test as its runtimes: a split into four numbers, a
square per branch (that fails for one chosen number, as a broken node would), and a join that
sums the squares it collects (`${{ square.outputs.sq[*] }}`). For the repair tests."""

from __future__ import annotations

import json

from tests.factories import Api, Json, graph, node, template

START, SPLIT = node("Start"), node("Split", outputs=["n"])
SQUARE = node("Square", inputs=["n"], outputs=["sq"])
SUM = node("Sum", inputs=["values"], outputs=["total"])
NODES = (START, SPLIT, SQUARE, SUM)
ITEMS = ["3", "1", "2", "5"]
CLEAN_TOTAL = str(sum(int(n) ** 2 for n in ITEMS))


def map_reduce(strategy: str) -> Json:
    return graph(
        template("start", "Start", {"x": "go"}, ["split"]),
        template("split", "Split", {"x": "${{ start.outputs.y }}"}, ["square"]),
        template("square", "Square", {"n": "${{ split.outputs.n }}"}),
        template("sum", "Sum", {"values": "${{ square.outputs.sq[*] }}"}, unites="start", strategy=strategy),
        retry_policy={"max_retries": 0},
    )


async def work(api: Api, *, broken: str | None) -> int:
    """Act as the runtimes until nothing is left to claim; Square fails on `broken`. Returns how
    many states were executed."""
    done = 0
    while True:
        progressed = False
        for name in ("Start", "Split", "Square", "Sum"):
            for state in await api.claim(name, batch_size=50):
                progressed, done = True, done + 1
                await execute(api, name, state, broken)
        if not progressed:
            return done


async def execute(api: Api, name: str, state: Json, broken: str | None) -> None:
    inputs = state["inputs"]
    if name == "Start":
        await api.executed(state["state_id"], [{"y": "go"}])
    elif name == "Split":
        await api.executed(state["state_id"], [{"n": item} for item in ITEMS])
    elif name == "Square":
        if inputs["n"] == broken:
            await api.errored(state["state_id"], "square is broken for " + inputs["n"])
        else:
            await api.executed(state["state_id"], [{"sq": str(int(inputs["n"]) ** 2)}])
    else:
        values = json.loads(inputs["values"])
        await api.executed(state["state_id"], [{"total": str(sum(int(v) for v in values))}])


async def result(api: Api, run_id: str) -> tuple[str, list[str]]:
    """The run's status and the totals of its live (not superseded) Sum states."""
    summary = await api.run_summary(run_id)
    sums = (await api.by_identifier(run_id)).get("sum", [])
    return summary["status"], [s["outputs"].get("total", "-") for s in sums if s["status"] == "SUCCESS"]
