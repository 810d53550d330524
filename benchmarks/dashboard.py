"""How long the dashboard takes to render a run of a fan-out of 1000 states (issue 10: under a
second of server time), on the embedded store, measured from a client on the same machine.

    .venv/bin/python -m benchmarks.dashboard [--branches 1000] [--repeat 15]

The run is left RUNNING (some branches done, some failed, some claimed, the rest waiting), so
no stored counts help: every page counts its states now. A round trip on loopback costs about a
millisecond more than the server's own time.
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

NS = "bench-ui"


def _schema(*fields: str) -> dict[str, Any]:
    return {"properties": {f: {"type": "string"} for f in fields}, "required": list(fields)}


def _setup(http: httpx.Client, branches: int) -> str:
    def call(method: str, path: str, body: Any = None) -> Any:
        response = http.request(method, f"/v0/namespace/{NS}{path}", json=body)
        response.raise_for_status()
        return response.json()

    nodes = [
        {"name": name, "inputs_schema": _schema("x"), "outputs_schema": _schema("y"), "secrets": []}
        for name in ("Fan", "Leaf")
    ]
    call("PUT", "/nodes/", {"runtime_name": "bench", "nodes": nodes})
    graph = {
        "secrets": {},
        "retry_policy": {"max_retries": 0},
        "nodes": [
            {
                "node_name": "Fan",
                "namespace": NS,
                "identifier": "fan",
                "inputs": {"x": "go"},
                "next_nodes": ["leaf"],
            },
            {
                "node_name": "Leaf",
                "namespace": NS,
                "identifier": "leaf",
                "inputs": {"x": "${{ fan.outputs.y }}"},
            },
        ],
    }
    call("PUT", "/graph/fan", graph)
    run_id: str = call("POST", "/graph/fan/trigger", {})["run_id"]
    [fan] = call("POST", "/states/enqueue", {"nodes": ["Fan"], "batch_size": 1})["states"]
    call("POST", f"/state/{fan['state_id']}/executed", {"outputs": [{"y": str(i)} for i in range(branches)]})
    claimed = call("POST", "/states/enqueue", {"nodes": ["Leaf"], "batch_size": 100})["states"]
    for i, state in enumerate(claimed[:60]):  # 50 done, 10 failed, 40 still claimed, the rest waiting
        if i < 50:
            call("POST", f"/state/{state['state_id']}/executed", {"outputs": [{"y": "ok"}]})
        else:
            call("POST", f"/state/{state['state_id']}/errored", {"error": "boom"})
    run = call("GET", f"/run/{run_id}")
    assert run["status"] == "RUNNING" and run["total_count"] >= 2 * branches, run
    return run_id


def _time(http: httpx.Client, path: str, repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = http.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
    return statistics.median(samples), max(samples)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--branches", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, state_manager(Path(tmp)) as server:
        with httpx.Client(base_url=server.base_url, headers=server.headers, timeout=120) as api:
            run_id = _setup(api, args.branches)
            states = api.get(f"/v0/namespace/{NS}/run/{run_id}/states?status=ERRORED").json()["states"]
        with httpx.Client(base_url=server.base_url, timeout=60) as ui:
            login = ui.post(
                "/ui/login", data={"api_key": server.api_key}, headers={"origin": server.base_url}
            )
            assert login.status_code == 303, login.text
            pages = {
                "runs list": f"/ui/ns/{NS}/runs",
                "run: graph tab": f"/ui/ns/{NS}/runs/{run_id}",
                "run: states tab": f"/ui/ns/{NS}/runs/{run_id}?tab=states",
                "run: states of one node": f"/ui/ns/{NS}/runs/{run_id}?tab=states&identifier=leaf",
                "run: timeline tab": f"/ui/ns/{NS}/runs/{run_id}?tab=timeline",
                "run: store tab": f"/ui/ns/{NS}/runs/{run_id}?tab=store",
                "state (a failed branch)": f"/ui/ns/{NS}/states/{states[0]['id']}",
                "nodes and queues": f"/ui/ns/{NS}/nodes",
            }
            size = f"{2 * args.branches} states (a fan-out of {args.branches})"
            print(f"a RUNNING run of {size}, {args.repeat} GETs each")
            print(f"{'page':28} {'median ms':>10} {'max ms':>8}")
            for name, path in pages.items():
                median, worst = _time(ui, path, args.repeat)
                print(f"{name:28} {median:10.1f} {worst:8.1f}")


if __name__ == "__main__":
    main()
