"""The graphs the scenarios run, and the deterministic worker that runs their nodes.

- CHAIN: a (Alpha) -> b (Beta) -> c (Gamma); each appends its identifier to its input x.
- FAN_IN(strategy): start -> split (outputs n = 1, 2, 3: three branches) -> square (sq = n*n);
  `sum` unites `start` and collects `${{ square.outputs.sq[*] }}` (total = their sum).

No automatic retries. The worker fails a state whose input x contains "fail" (always), and
states it is told are broken (a chain identifier, or a square's n) until they are fixed: that
is how a scenario sets up a failure and then plays the repair (fix, then retry).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tests.factories import NO_RETRY, Json, graph, node, template

CHAIN_NODES = (node("Alpha"), node("Beta"), node("Gamma"))
FAN_NODES = (
    node("Start"),
    node("Split", outputs=["n"]),
    node("Square", inputs=["n"], outputs=["sq"]),
    node("Sum", inputs=["values"], outputs=["total"]),
)
ALL_NODES = ("Alpha", "Beta", "Gamma", "Start", "Split", "Square", "Sum")
SPLIT_ITEMS = ("1", "2", "3")


def chain() -> Json:
    return graph(
        template("a", "Alpha", {"x": "start"}, ["b"]),
        template("b", "Beta", {"x": "${{ a.outputs.y }}"}, ["c"]),
        template("c", "Gamma", {"x": "${{ b.outputs.y }}"}),
        retry_policy=NO_RETRY,
    )


# One automatic retry, due at once (a branch that errors is tried again).
ONE_RETRY: Json = {"max_retries": 1, "strategy": "FIXED", "backoff_factor": 1}


def fan_in(strategy: str, retry_policy: Json = NO_RETRY) -> Json:
    return graph(
        template("start", "Start", {"x": "go"}, ["split"]),
        template("split", "Split", {"x": "${{ start.outputs.y }}"}, ["square"]),
        template("square", "Square", {"n": "${{ split.outputs.n }}"}),
        template("sum", "Sum", {"values": "${{ square.outputs.sq[*] }}"}, unites="start", strategy=strategy),
        retry_policy=retry_policy,
    )


def label(state: Json) -> str:
    """A state's name in scenarios: its identifier, and for a branch its item (`square[2]`)."""
    n = state["inputs"].get("n")
    return f"{state['identifier']}[{n}]" if n is not None else str(state["identifier"])


@dataclass
class Worker:
    """What a runtime reports for a claimed state: outputs (a list) or an error (a str)."""

    broken: set[str] = field(default_factory=set)  # labels that fail until fixed

    def run(self, state: Json) -> list[Json] | str:
        name, inputs = state["node_name"], state["inputs"]
        if label(state) in self.broken:
            return f"{label(state)} broke"
        if name in ("Alpha", "Beta", "Gamma"):
            x = inputs["x"]
            return f"bad input {x}" if "fail" in x else [{"y": f"{x}+{state['identifier']}"}]
        if name == "Start":
            return [{"y": "go"}]
        if name == "Split":
            return [{"n": n} for n in SPLIT_ITEMS]
        if name == "Square":
            return [{"sq": str(int(inputs["n"]) ** 2)}]
        if name == "Sum":
            return [{"total": str(sum(int(v) for v in json.loads(inputs["values"])))}]
        raise AssertionError(f"no behaviour for node {name}")


def clean_chain(x: str = "start") -> dict[str, list[Any]]:
    a = f"{x}+a"
    return {"a": [{"y": a}], "b": [{"y": f"{a}+b"}], "c": [{"y": f"{a}+b+c"}]}


def clean_fan_in() -> dict[str, list[Any]]:
    squares = [{"sq": str(int(n) ** 2)} for n in SPLIT_ITEMS]
    return {
        "start": [{"y": "go"}],
        "split": [{"n": n} for n in SPLIT_ITEMS],
        "square": squares,
        "sum": [{"total": str(sum(int(s["sq"]) for s in squares))}],
    }
