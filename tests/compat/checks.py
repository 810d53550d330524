"""Checks shared by the compat test modules, one module per official SDK release.

Each test module runs its release's scenario script and calls these with its own process, scenario
names and values; what only one release does stays in its module. The conftest registers this module
for pytest's assertion rewriting, so a failed bare ``assert`` here still shows both sides.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from tests.support.api import State, StateManagerAPI, group_by_identifier, summarize_states
from tests.support.live_server import LiveServer
from tests.support.scenario_process import ScenarioProcess


def single(grouped: dict[str, list[State]], identifier: str) -> State:
    """The one state of ``identifier`` in a run grouped by identifier (fails on none or several)."""
    states = grouped.get(identifier, [])
    assert len(states) == 1, f"expected one {identifier!r} state, got {len(states)}: {states}"
    return states[0]


def assert_official_release(process: ScenarioProcess, version: str) -> None:
    """The scenario process imported ``exospherehost==version`` from PyPI, not our own SDK."""
    assert process.sdk["version"] == version
    assert f"exospherehost-{version}" in process.sdk["file"], process.sdk


def assert_nodes_registered(
    process: ScenarioProcess, api: StateManagerAPI, scenario_names: Iterable[str]
) -> None:
    """``GET /nodes/`` lists every node of these scenarios with the schemas and secrets the SDK sent."""
    for name in scenario_names:
        scenario = process.scenario(name)
        registered = {node["name"]: node for node in api.nodes(scenario["namespace"])}
        for expected in scenario["schemas"]:
            node = registered.get(expected["name"])
            assert node is not None, f"{expected['name']} not listed by GET /nodes/: {sorted(registered)}"
            assert node["inputs_schema"] == expected["inputs_schema"]
            assert node["outputs_schema"] == expected["outputs_schema"]
            assert list(node["secrets"]) == expected["secrets"]
            assert node["namespace"] == scenario["namespace"]


def assert_graphs_valid(
    process: ScenarioProcess, api: StateManagerAPI, scenario_names: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """The SDK's upsert saw VALID and ``GET /graph/{g}`` says VALID; returns each graph by scenario."""
    graphs: dict[str, dict[str, Any]] = {}
    for name in scenario_names:
        scenario = process.scenario(name)
        assert scenario["upsert"]["validation_status"] == "VALID", scenario["upsert"]
        graph = api.graph(scenario["namespace"], scenario["graph"])
        assert graph["validation_status"] == "VALID", graph
        graphs[name] = graph
    return graphs


def assert_chain_resolved(
    api: StateManagerAPI, namespace: str, run_id: str
) -> tuple[list[State], dict[str, Any]]:
    """The a -> b -> c chain run on "hello" resolved every placeholder and succeeded (3 of 3).

    Returns the run's states and its ``/runs/`` summary for the release's own extra checks.
    """
    states = api.wait_run(namespace, run_id, min_states=3)
    assert all(state["status"] == "SUCCESS" for state in states), summarize_states(states)
    grouped = group_by_identifier(states)
    a, b, c = (single(grouped, identifier) for identifier in ("a", "b", "c"))
    assert a["inputs"] == {"text": "hello"}  # the trigger's (0.0.3: they override the root template's)
    assert a["outputs"] == {"upper": "HELLO"}
    assert b["inputs"] == {"left": "HELLO", "right": "lit-HELLO"}
    assert b["outputs"] == {"joined": "HELLO+lit-HELLO"}
    assert c["inputs"] == {"value": "HELLO+lit-HELLO", "prefix": "HELLO"}
    assert c["outputs"] == {"result": "HELLO[HELLO+lit-HELLO]"}

    run = api.run_summary(namespace, run_id)
    assert (run["status"], run["success_count"], run["total_count"]) == ("SUCCESS", 3, 3), run
    return states, run


def assert_fan_out(api: StateManagerAPI, namespace: str, run_id: str) -> None:
    """``split`` fans out to ten ``shout`` children, one per output, and the run succeeds 20 of 20."""
    states = api.wait_run(namespace, run_id, min_states=20)
    assert len(states) == 20, summarize_states(states)
    assert all(state["status"] == "SUCCESS" for state in states), summarize_states(states)
    grouped = group_by_identifier(states)
    expected_items = [f"fan-{i}" for i in range(10)]
    assert sorted(state["outputs"]["item"] for state in grouped["split"]) == expected_items
    children = grouped["shout"]
    assert sorted(child["inputs"]["item"] for child in children) == expected_items
    for child in children:
        assert child["outputs"] == {"loud": child["inputs"]["item"].upper() + "!"}

    run = api.run_summary(namespace, run_id)
    counts = ("success_count", "pending_count", "errored_count", "retried_count", "total_count")
    assert run["status"] == "SUCCESS", run
    assert [run[key] for key in counts] == [20, 0, 0, 0, 20], run


def assert_failed_after_retries(api: StateManagerAPI, namespace: str, run_id: str, retries: int) -> None:
    """``start`` succeeds, ``boom`` fails ``retries`` + 1 times (each retried but the last) and the
    run ends FAILED."""
    attempts_made = retries + 1
    states = api.wait_run(
        namespace,
        run_id,
        min_states=1 + attempts_made,
        until=lambda states: any(state["status"] == "ERRORED" for state in states),
    )
    assert len(states) == 1 + attempts_made, summarize_states(states)
    grouped = group_by_identifier(states)
    assert single(grouped, "start")["status"] == "SUCCESS"
    attempts = grouped["boom"]
    assert sorted(state["status"] for state in attempts) == ["ERRORED"] + ["RETRY_CREATED"] * retries, (
        summarize_states(states)
    )
    for attempt in attempts:
        assert "boom: KABOOM" in (attempt["error"] or ""), summarize_states(attempts)
        assert attempt["inputs"] == {"reason": "KABOOM"}

    run = api.run_summary(namespace, run_id)
    assert run["status"] == "FAILED", run
    counts = ("errored_count", "retried_count", "success_count", "pending_count", "total_count")
    assert [run[key] for key in counts] == [1, retries, 1, 0, 1 + attempts_made], run


def assert_secret_used_and_never_listed(
    api: StateManagerAPI, server: LiveServer, namespace: str, run_id: str, secret_value: str
) -> None:
    """The ``use`` node of the "secrets" graph got the plaintext secret (its digest proves it), while
    no listing of that namespace and not the server log ever shows the plaintext."""
    states = api.wait_run(namespace, run_id, min_states=1)
    state = single(group_by_identifier(states), "use")
    assert state["status"] == "SUCCESS", summarize_states(states)
    expected_digest = hashlib.sha256(f"{secret_value}:payload".encode()).hexdigest()
    assert state["outputs"] == {"digest": expected_digest, "token_length": str(len(secret_value))}

    for path in (
        f"/v0/namespace/{namespace}/graphs/",
        f"/v0/namespace/{namespace}/graph/secrets",
        f"/v0/namespace/{namespace}/states/run/{run_id}",
        f"/v0/namespace/{namespace}/nodes/",
    ):
        assert secret_value not in api.get_text(path), f"GET {path} leaks the secret plaintext"
    assert secret_value not in server.log_text(), "the server log contains the secret plaintext"
