"""How long forking a finished run and diffing two runs take (issue 17: a fork of a run of 1,000
states and a diff of two runs of 2,000 states each in at most a second), on the embedded store,
measured from a client on the same machine.

    .venv/bin/python -m benchmarks.forks [--branches 500] [--repeat 5]

A finished map-reduce run of 2 * branches + 2 states (a root, a fan-out of `branches` with its
copies, a leaf per branch, a join) is forked three ways: from the join (everything else reused),
from the leaves (the root and the fan-out reused, every leaf and the join run again) and from the
root (nothing reused). Then the original is diffed with a fork from the leaves run to its end
with other outputs, so every leaf entry differs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.processes import state_manager

NS = "bench-forks"


def _schema(*fields: str) -> dict[str, Any]:
    return {"properties": {f: {"type": "string"} for f in fields}, "required": list(fields)}


class Api:
    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        response = self.http.request(method, f"/v0/namespace/{NS}{path}", json=body)
        assert response.status_code == expect, (path, response.status_code, response.text[:300])
        return response.json()

    def work(self, node: str, outputs: Any) -> int:
        """Claim and report every due state of `node`; how many."""
        done = 0
        while claimed := self.call("POST", "/states/enqueue", {"nodes": [node], "batch_size": 200})["states"]:
            for state in claimed:
                body = {"outputs": outputs(state) if callable(outputs) else outputs}
                self.call("POST", f"/state/{state['state_id']}/executed", body)
                done += 1
        return done


def _setup(api: Api, branches: int) -> str:
    nodes = [
        {"name": name, "inputs_schema": _schema("x"), "outputs_schema": _schema("y"), "secrets": []}
        for name in ("Root", "Fan", "Leaf", "Join")
    ]
    api.call("PUT", "/nodes/", {"runtime_name": "bench", "nodes": nodes})

    def node(
        name: str, identifier: str, x: str, nxt: list[str] | None = None, unites: str | None = None
    ) -> Any:
        body: dict[str, Any] = {
            "node_name": name,
            "namespace": NS,
            "identifier": identifier,
            "inputs": {"x": x},
        }
        if nxt:
            body["next_nodes"] = nxt
        if unites:
            body["unites"] = {"identifier": unites}
        return body

    graph = {
        "secrets": {},
        "retry_policy": {"max_retries": 0},
        "nodes": [
            node("Root", "root", "go", ["fan"]),
            node("Fan", "fan", "${{ root.outputs.y }}", ["leaf"]),
            node("Leaf", "leaf", "${{ fan.outputs.y }}"),
            node("Join", "join", "${{ leaf.outputs.y[*] }}", unites="root"),
        ],
    }
    api.call("PUT", "/graph/mr", graph, expect=201)
    run_id: str = api.call("POST", "/graph/mr/trigger", {})["run_id"]
    api.work("Root", [{"y": "go"}])
    api.work("Fan", [{"y": str(i)} for i in range(branches)])
    api.work("Leaf", lambda state: [{"y": "leaf " + state["inputs"]["x"]}])
    api.work("Join", [{"y": "joined"}])
    run = api.call("GET", f"/run/{run_id}")
    assert run["status"] == "SUCCESS", run
    return run_id


def _timed(repeat: int, operation: Any) -> tuple[float, float, Any]:
    samples, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = operation()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), max(samples), result


def _measure(api: Api, branches: int, repeat: int) -> None:
    original = _setup(api, branches)
    total = api.call("GET", f"/run/{original}")["total_count"]
    print(f"a finished run of {total} states (a fan-out of {branches} + a join), {repeat} tries each")
    print(f"{'operation':42} {'median ms':>10} {'max ms':>8} {'reused':>7}")
    for label, start in (
        ("fork from the join", "join"),
        ("fork from the leaves", "leaf"),
        ("fork from the root", "root"),
    ):
        median, worst, answer = _timed(
            repeat,
            lambda s=start: api.call("POST", f"/run/{original}/fork", {"from": [s]}, expect=201),
        )
        print(f"{label:42} {median:10.1f} {worst:8.1f} {answer['reused']:7d}")
    # Leave only one fork of the leaves waiting, run it with other outputs, then diff.
    fork = api.call("POST", f"/run/{original}/fork", {"from": ["leaf"]}, expect=201)["run_id"]
    for run in api.call("GET", f"/runs?forked_from={original}&limit=500")["runs"]:
        if run["run_id"] != fork and run["status"] in ("PENDING", "RUNNING"):
            api.call("POST", f"/run/{run['run_id']}/cancel")
    api.work("Leaf", lambda state: [{"y": "other " + state["inputs"]["x"]}])
    api.work("Join", [{"y": "joined again"}])
    assert api.call("GET", f"/run/{fork}")["status"] == "SUCCESS"
    median, worst, diff = _timed(repeat, lambda: api.call("GET", f"/run/{original}/diff/{fork}"))
    states = api.call("GET", f"/run/{fork}")["total_count"]
    print(f"{f'diff of two runs of {total} and {states} states':42} {median:10.1f} {worst:8.1f}")
    print(f"  summary: {diff['summary']}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--branches", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        state_manager(Path(tmp)) as server,
        httpx.Client(base_url=server.base_url, headers=server.headers, timeout=120) as http,
    ):
        _measure(Api(http), args.branches, args.repeat)


if __name__ == "__main__":
    main()
