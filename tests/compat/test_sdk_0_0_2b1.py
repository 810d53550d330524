"""The official ``exospherehost==0.0.2b1`` (SEED era), unchanged, against our state manager.

One scenario process (scenarios/sdk_0_0_2b1.py) registers the nodes, upserts the graphs and
triggers every run at once; each test then checks one scenario's outcome through our REST API.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.api import StateManagerAPI, group_by_identifier, summarize_states
from tests.support.live_server import LiveServer
from tests.support.scenario_process import ScenarioProcess, ScenarioRunner

VERSION = "0.0.2b1"
SECRET_VALUE = f"sk-compat-{secrets.token_hex(16)}"

pytestmark = [pytest.mark.compat, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def seed(scenario_runner: ScenarioRunner) -> Iterator[ScenarioProcess]:
    with scenario_runner(VERSION, "sdk_0_0_2b1.py", COMPAT_SECRET_VALUE=SECRET_VALUE) as proc:
        yield proc


def _single(grouped: dict[str, list[dict[str, Any]]], identifier: str) -> dict[str, Any]:
    states = grouped.get(identifier, [])
    assert len(states) == 1, f"expected one {identifier!r} state, got {len(states)}: {states}"
    return states[0]


def test_runs_the_official_release(seed: ScenarioProcess) -> None:
    assert seed.sdk["version"] == VERSION
    assert f"exospherehost-{VERSION}" in seed.sdk["file"], seed.sdk


def test_nodes_are_registered_with_their_schemas(seed: ScenarioProcess, compat_api: StateManagerAPI) -> None:
    for name in ("chain", "secrets"):
        scenario = seed.scenario(name)
        registered = {node["name"]: node for node in compat_api.nodes(scenario["namespace"])}
        for expected in scenario["schemas"]:
            node = registered.get(expected["name"])
            assert node is not None, f"{expected['name']} not listed by GET /nodes/: {sorted(registered)}"
            assert node["inputs_schema"] == expected["inputs_schema"]
            assert node["outputs_schema"] == expected["outputs_schema"]
            assert list(node["secrets"]) == expected["secrets"]
            assert node["namespace"] == scenario["namespace"]


def test_upsert_graph_polls_until_valid(seed: ScenarioProcess, compat_api: StateManagerAPI) -> None:
    expected_identifiers = {
        "chain": {"a", "b", "c"},
        "multi_seed": {"a", "b", "c"},
        "fanout": {"split", "shout"},
        "failing": {"start", "boom"},
        "secrets": {"use"},
    }
    for name, identifiers in expected_identifiers.items():
        scenario = seed.scenario(name)
        assert scenario["upsert"]["validation_status"] == "VALID", scenario["upsert"]
        graph = compat_api.graph(scenario["namespace"], scenario["graph"])
        assert graph["validation_status"] == "VALID", graph
        assert {node["identifier"] for node in graph["nodes"]} == identifiers
    secret_graph = compat_api.graph(seed.scenario("secrets")["namespace"], "secrets")
    assert secret_graph["secrets"] == {"api_token": True}


def test_chain_resolves_placeholders(seed: ScenarioProcess, compat_api: StateManagerAPI) -> None:
    scenario = seed.scenario("chain")
    ns, run_id = scenario["namespace"], scenario["run_ids"][0]
    trigger = scenario["trigger"]
    assert trigger["status"] == "CREATED"
    assert [state["identifier"] for state in trigger["states"]] == ["a"]  # the SEED response shape
    assert trigger["states"][0]["inputs"] == {"text": "hello"}

    states = compat_api.wait_run(ns, run_id, min_states=3)
    assert all(state["status"] == "SUCCESS" for state in states), summarize_states(states)
    grouped = group_by_identifier(states)
    a, b, c = (_single(grouped, identifier) for identifier in ("a", "b", "c"))
    assert a["inputs"] == {"text": "hello"}
    assert a["outputs"] == {"upper": "HELLO"}
    assert b["inputs"] == {"left": "HELLO", "right": "lit-HELLO"}
    assert b["outputs"] == {"joined": "HELLO+lit-HELLO"}
    assert c["inputs"] == {"value": "HELLO+lit-HELLO", "prefix": "HELLO"}
    assert c["outputs"] == {"result": "HELLO[HELLO+lit-HELLO]"}
    assert c["parents"] == {"a": a["id"], "b": b["id"]}
    assert all(state["run_id"] == run_id and state["graph_name"] == "chain" for state in states)

    run = compat_api.run_summary(ns, run_id)
    assert (run["status"], run["success_count"], run["total_count"]) == ("SUCCESS", 3, 3), run


def test_trigger_with_several_states_seeds_one_run(
    seed: ScenarioProcess, compat_api: StateManagerAPI
) -> None:
    scenario = seed.scenario("multi_seed")
    ns, run_id = scenario["namespace"], scenario["run_ids"][0]
    assert len(scenario["trigger"]["states"]) == 2, scenario["trigger"]

    states = compat_api.wait_run(ns, run_id, min_states=6)
    assert len(states) == 6, summarize_states(states)
    assert all(state["status"] == "SUCCESS" for state in states), summarize_states(states)
    grouped = group_by_identifier(states)
    assert sorted(state["inputs"]["text"] for state in grouped["a"]) == ["x", "y"]
    assert sorted(state["outputs"]["result"] for state in grouped["c"]) == ["X[X+lit-X]", "Y[Y+lit-Y]"]


def test_fan_out_creates_one_child_per_output(seed: ScenarioProcess, compat_api: StateManagerAPI) -> None:
    scenario = seed.scenario("fanout")
    ns, run_id = scenario["namespace"], scenario["run_ids"][0]

    states = compat_api.wait_run(ns, run_id, min_states=20)
    assert len(states) == 20, summarize_states(states)
    assert all(state["status"] == "SUCCESS" for state in states), summarize_states(states)
    grouped = group_by_identifier(states)
    expected_items = [f"fan-{i}" for i in range(10)]
    assert sorted(state["outputs"]["item"] for state in grouped["split"]) == expected_items
    children = grouped["shout"]
    assert sorted(child["inputs"]["item"] for child in children) == expected_items
    for child in children:
        assert child["outputs"] == {"loud": child["inputs"]["item"].upper() + "!"}

    run = compat_api.run_summary(ns, run_id)
    assert (run["status"], run["success_count"], run["total_count"], run["errored_count"]) == (
        "SUCCESS",
        20,
        20,
        0,
    ), run


def test_secret_reaches_the_node_and_never_the_listings(
    seed: ScenarioProcess, compat_api: StateManagerAPI, compat_server: LiveServer
) -> None:
    scenario = seed.scenario("secrets")
    ns, run_id = scenario["namespace"], scenario["run_ids"][0]

    states = compat_api.wait_run(ns, run_id, min_states=1)
    state = _single(group_by_identifier(states), "use")
    assert state["status"] == "SUCCESS", summarize_states(states)
    expected_digest = hashlib.sha256(f"{SECRET_VALUE}:payload".encode()).hexdigest()
    assert state["outputs"] == {"digest": expected_digest, "token_length": str(len(SECRET_VALUE))}

    for path in (
        f"/v0/namespace/{ns}/graphs/",
        f"/v0/namespace/{ns}/graph/secrets",
        f"/v0/namespace/{ns}/states/run/{run_id}",
        f"/v0/namespace/{ns}/nodes/",
    ):
        assert SECRET_VALUE not in compat_api.get_text(path), f"GET {path} leaks the secret plaintext"
    assert SECRET_VALUE not in compat_server.log_text(), "the server log contains the secret plaintext"


def test_failing_node_is_retried_then_errored(seed: ScenarioProcess, compat_api: StateManagerAPI) -> None:
    """Default graph retry policy (3 retries, exponential 2 s / 4 s / 8 s): four attempts."""
    scenario = seed.scenario("failing")
    ns, run_id = scenario["namespace"], scenario["run_ids"][0]

    states = compat_api.wait_run(
        ns,
        run_id,
        min_states=5,
        until=lambda states: any(state["status"] == "ERRORED" for state in states),
        timeout=60,
    )
    grouped = group_by_identifier(states)
    assert _single(grouped, "start")["status"] == "SUCCESS"
    attempts = grouped["boom"]
    assert sorted(state["status"] for state in attempts) == ["ERRORED"] + ["RETRY_CREATED"] * 3, (
        summarize_states(states)
    )
    for attempt in attempts:
        assert "boom: KABOOM" in (attempt["error"] or ""), summarize_states(attempts)
        assert attempt["inputs"] == {"reason": "KABOOM"}

    run = compat_api.run_summary(ns, run_id)
    assert run["status"] == "FAILED", run
    assert (run["errored_count"], run["retried_count"], run["success_count"], run["pending_count"]) == (
        1,
        3,
        1,
        0,
    ), run
    assert run["total_count"] == 5, run
