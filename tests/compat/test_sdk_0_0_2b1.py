"""The official ``exospherehost==0.0.2b1`` (SEED era), unchanged, against our state manager.

One scenario process (scenarios/sdk_0_0_2b1.py) registers the nodes, upserts the graphs and
triggers every run at once; each test then checks one scenario's outcome through our REST API.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.compat import checks
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


def test_runs_the_official_release(seed: ScenarioProcess) -> None:
    checks.assert_official_release(seed, VERSION)


def test_nodes_are_registered_with_their_schemas(seed: ScenarioProcess, compat_api: StateManagerAPI) -> None:
    checks.assert_nodes_registered(seed, compat_api, ("chain", "secrets"))


def test_upsert_graph_polls_until_valid(seed: ScenarioProcess, compat_api: StateManagerAPI) -> None:
    expected_identifiers = {
        "chain": {"a", "b", "c"},
        "multi_seed": {"a", "b", "c"},
        "fanout": {"split", "shout"},
        "failing": {"start", "boom"},
        "secrets": {"use"},
    }
    graphs = checks.assert_graphs_valid(seed, compat_api, expected_identifiers)
    for name, identifiers in expected_identifiers.items():
        assert {node["identifier"] for node in graphs[name]["nodes"]} == identifiers
    assert graphs["secrets"]["secrets"] == {"api_token": True}


def test_chain_resolves_placeholders(seed: ScenarioProcess, compat_api: StateManagerAPI) -> None:
    scenario = seed.scenario("chain")
    ns, run_id = scenario["namespace"], scenario["run_ids"][0]
    trigger = scenario["trigger"]
    assert trigger["status"] == "CREATED"
    assert [state["identifier"] for state in trigger["states"]] == ["a"]  # the SEED response shape
    assert trigger["states"][0]["inputs"] == {"text": "hello"}

    states, _ = checks.assert_chain_resolved(compat_api, ns, run_id)
    grouped = group_by_identifier(states)
    a, b, c = (checks.single(grouped, identifier) for identifier in ("a", "b", "c"))
    assert c["parents"] == {"a": a["id"], "b": b["id"]}
    assert all(state["run_id"] == run_id and state["graph_name"] == "chain" for state in states)


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
    checks.assert_fan_out(compat_api, scenario["namespace"], scenario["run_ids"][0])


def test_secret_reaches_the_node_and_never_the_listings(
    seed: ScenarioProcess, compat_api: StateManagerAPI, compat_server: LiveServer
) -> None:
    scenario = seed.scenario("secrets")
    ns, run_id = scenario["namespace"], scenario["run_ids"][0]
    checks.assert_secret_used_and_never_listed(compat_api, compat_server, ns, run_id, SECRET_VALUE)


def test_failing_node_is_retried_then_errored(seed: ScenarioProcess, compat_api: StateManagerAPI) -> None:
    """Default graph retry policy (3 retries, exponential 2 s / 4 s / 8 s): four attempts."""
    scenario = seed.scenario("failing")
    checks.assert_failed_after_retries(compat_api, scenario["namespace"], scenario["run_ids"][0], retries=3)
