"""The official ``exospherehost==0.0.3`` (HEAD era), unchanged, against our state manager.

One scenario process (scenarios/sdk_0_0_3.py) registers the nodes, upserts the graphs and
triggers every run at once; each test then checks one scenario's outcome through our REST API.
The start-delay test comes first because it looks at the run while the delay is still running.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.api import StateManagerAPI, group_by_identifier, summarize_states
from tests.support.live_server import LiveServer
from tests.support.scenario_process import ScenarioProcess, ScenarioRunner

VERSION = "0.0.3"
SECRET_VALUE = f"sk-compat-{secrets.token_hex(16)}"
START_DELAY_MS = 4000

pytestmark = [pytest.mark.compat, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def head(scenario_runner: ScenarioRunner) -> Iterator[ScenarioProcess]:
    with scenario_runner(
        VERSION,
        "sdk_0_0_3.py",
        COMPAT_SECRET_VALUE=SECRET_VALUE,
        COMPAT_START_DELAY_MS=str(START_DELAY_MS),
    ) as proc:
        yield proc


def _single(grouped: dict[str, list[dict[str, Any]]], identifier: str) -> dict[str, Any]:
    states = grouped.get(identifier, [])
    assert len(states) == 1, f"expected one {identifier!r} state, got {len(states)}: {states}"
    return states[0]


def _run(scenario: dict[str, Any]) -> tuple[str, str]:
    assert scenario["trigger"]["status"] == "CREATED", scenario["trigger"]
    return scenario["namespace"], scenario["run_ids"][0]


def test_start_delay_holds_the_root_back(head: ScenarioProcess, compat_api: StateManagerAPI) -> None:
    scenario = head.scenario("start_delay")
    ns, run_id = _run(scenario)
    delay = START_DELAY_MS / 1000
    due_at = scenario["triggered_at"] + delay

    if time.time() < due_at - 1.0:  # still well inside the delay: the root must not be claimable
        early = compat_api.run_states(ns, run_id)
        assert [state["status"] for state in early] == ["CREATED"], summarize_states(early)

    states = compat_api.wait_run(ns, run_id, min_states=1, timeout=60)
    state = _single(group_by_identifier(states), "delayed")
    assert state["status"] == "SUCCESS", summarize_states(states)
    assert state["inputs"] == {"text": "later"}
    executions = head.events("delayed")
    assert len(executions) == 1, executions
    waited = executions[0]["at"] - scenario["triggered_at"]
    assert waited >= delay - 0.05, (
        f"the root ran {waited:.2f}s after trigger, before its {delay}s start_delay"
    )


def test_runs_the_official_release(head: ScenarioProcess) -> None:
    assert head.sdk["version"] == VERSION
    assert f"exospherehost-{VERSION}" in head.sdk["file"], head.sdk


def test_nodes_are_registered_with_their_schemas(head: ScenarioProcess, compat_api: StateManagerAPI) -> None:
    for name in ("chain", "secrets"):
        scenario = head.scenario(name)
        registered = {node["name"]: node for node in compat_api.nodes(scenario["namespace"])}
        for expected in scenario["schemas"]:
            node = registered.get(expected["name"])
            assert node is not None, f"{expected['name']} not listed by GET /nodes/: {sorted(registered)}"
            assert node["inputs_schema"] == expected["inputs_schema"]
            assert node["outputs_schema"] == expected["outputs_schema"]
            assert list(node["secrets"]) == expected["secrets"]
            assert node["namespace"] == scenario["namespace"]


def test_upsert_graph_polls_until_valid(head: ScenarioProcess, compat_api: StateManagerAPI) -> None:
    for name in (
        "start_delay",
        "chain",
        "fanout",
        "failing",
        "secrets",
        "store",
        "retries",
        "unites",
        "prune",
    ):
        scenario = head.scenario(name)
        assert scenario["upsert"]["validation_status"] == "VALID", scenario["upsert"]
        graph = compat_api.graph(scenario["namespace"], scenario["graph"])
        assert graph["validation_status"] == "VALID", graph
        assert graph["validation_errors"] in ([], None), graph
    graph = compat_api.graph(head.scenario("unites")["namespace"], "unites")
    merge = next(node for node in graph["nodes"] if node["identifier"] == "m")
    assert merge["unites"]["identifier"] == "r", merge


def test_get_graph_returns_the_stored_retry_policy_and_store_config(
    head: ScenarioProcess, compat_api: StateManagerAPI
) -> None:
    """Upstream returned defaults here (reference section 7.7); we return what was stored."""
    failing = head.scenario("failing")
    graph = compat_api.graph(failing["namespace"], failing["graph"])
    assert graph["retry_policy"] == failing["retry_policy"], graph["retry_policy"]

    store = head.scenario("store")
    graph = compat_api.graph(store["namespace"], store["graph"])
    assert graph["store_config"] == store["store_config"], graph["store_config"]


def test_chain_resolves_placeholders(head: ScenarioProcess, compat_api: StateManagerAPI) -> None:
    ns, run_id = _run(head.scenario("chain"))

    states = compat_api.wait_run(ns, run_id, min_states=3)
    assert all(state["status"] == "SUCCESS" for state in states), summarize_states(states)
    grouped = group_by_identifier(states)
    a, b, c = (_single(grouped, identifier) for identifier in ("a", "b", "c"))
    assert a["inputs"] == {"text": "hello"}  # trigger inputs override the root template's
    assert a["outputs"] == {"upper": "HELLO"}
    assert b["inputs"] == {"left": "HELLO", "right": "lit-HELLO"}
    assert b["outputs"] == {"joined": "HELLO+lit-HELLO"}
    assert c["inputs"] == {"value": "HELLO+lit-HELLO", "prefix": "HELLO"}
    assert c["outputs"] == {"result": "HELLO[HELLO+lit-HELLO]"}

    run = compat_api.run_summary(ns, run_id)
    assert (run["graph_name"], run["status"], run["success_count"], run["total_count"]) == (
        "chain",
        "SUCCESS",
        3,
        3,
    ), run


def test_fan_out_creates_one_child_per_output(head: ScenarioProcess, compat_api: StateManagerAPI) -> None:
    ns, run_id = _run(head.scenario("fanout"))

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
    counts = ("success_count", "pending_count", "errored_count", "retried_count", "total_count")
    assert run["status"] == "SUCCESS", run
    assert [run[key] for key in counts] == [20, 0, 0, 0, 20], run


def test_failing_node_uses_the_graph_retry_policy(head: ScenarioProcess, compat_api: StateManagerAPI) -> None:
    """max_retries=1: the original attempt ends RETRY_CREATED, the single retry ends ERRORED."""
    ns, run_id = _run(head.scenario("failing"))

    states = compat_api.wait_run(
        ns, run_id, min_states=3, until=lambda states: any(s["status"] == "ERRORED" for s in states)
    )
    assert len(states) == 3, summarize_states(states)
    grouped = group_by_identifier(states)
    assert _single(grouped, "start")["status"] == "SUCCESS"
    attempts = grouped["boom"]
    assert sorted(state["status"] for state in attempts) == ["ERRORED", "RETRY_CREATED"], summarize_states(
        states
    )
    for attempt in attempts:
        assert "boom: KABOOM" in (attempt["error"] or ""), summarize_states(attempts)
        assert attempt["inputs"] == {"reason": "KABOOM"}

    run = compat_api.run_summary(ns, run_id)
    assert run["status"] == "FAILED", run
    assert (run["errored_count"], run["retried_count"], run["success_count"], run["total_count"]) == (
        1,
        1,
        1,
        3,
    )


def test_secret_reaches_the_node_and_never_the_listings(
    head: ScenarioProcess, compat_api: StateManagerAPI, compat_server: LiveServer
) -> None:
    ns, run_id = _run(head.scenario("secrets"))

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


def test_store_values_resolve_in_root_and_children(
    head: ScenarioProcess, compat_api: StateManagerAPI
) -> None:
    scenario = head.scenario("store")
    ns, run_id = _run(scenario)

    states = compat_api.wait_run(ns, run_id, min_states=2)
    assert all(state["status"] == "SUCCESS" for state in states), summarize_states(states)
    grouped = group_by_identifier(states)
    root, combine = _single(grouped, "root"), _single(grouped, "combine")
    assert root["inputs"] == {"text": "from-store", "tag": "given-tag"}
    assert root["outputs"] == {"echo": "from-store/given-tag"}
    assert combine["inputs"] == {"combined": "from-store/given-tag|dflt|from-store"}
    assert combine["outputs"] == {"final": "FROM-STORE/GIVEN-TAG|DFLT|FROM-STORE"}

    error = scenario["missing_key_error"]
    assert error is not None, "a trigger without the required store key 'must' was accepted"
    assert error.startswith("Failed to trigger state: 400"), error
    assert "must" in error, error


def test_failed_attempt_is_retried_and_the_run_succeeds(
    head: ScenarioProcess, compat_api: StateManagerAPI
) -> None:
    ns, run_id = _run(head.scenario("retries"))

    states = compat_api.wait_run(
        ns, run_id, min_states=3, until=lambda states: any(s["identifier"] == "after" for s in states)
    )
    assert len(states) == 3, summarize_states(states)
    grouped = group_by_identifier(states)
    attempts = {state["status"]: state for state in grouped["flaky"]}
    assert sorted(attempts) == ["RETRY_CREATED", "SUCCESS"], summarize_states(states)
    assert "flaky attempt 1 for flaky-input" in (attempts["RETRY_CREATED"]["error"] or "")
    assert attempts["SUCCESS"]["inputs"] == attempts["RETRY_CREATED"]["inputs"] == {"text": "flaky-input"}
    assert attempts["SUCCESS"]["outputs"] == {"attempt": "2"}
    after = _single(grouped, "after")
    assert (after["status"], after["inputs"], after["outputs"]) == (
        "SUCCESS",
        {"attempt": "2"},
        {"seen": "after attempt 2"},
    )

    run = compat_api.run_summary(ns, run_id)
    assert run["status"] == "SUCCESS", run
    assert (run["success_count"], run["retried_count"], run["errored_count"], run["total_count"]) == (
        2,
        1,
        0,
        3,
    )


def test_unites_waits_for_every_branch_and_fires_once(
    head: ScenarioProcess, compat_api: StateManagerAPI
) -> None:
    ns, run_id = _run(head.scenario("unites"))

    states = compat_api.wait_run(
        ns, run_id, min_states=8, until=lambda states: any(s["identifier"] == "m" for s in states)
    )
    assert len(states) == 8, summarize_states(states)
    assert all(state["status"] == "SUCCESS" for state in states), summarize_states(states)
    grouped = group_by_identifier(states)
    root = _single(grouped, "r")
    assert root["outputs"] == {"word": "ABC"}
    assert sorted(state["outputs"]["part"] for state in grouped["s"]) == ["ABC-0", "ABC-1", "ABC-2"]
    assert sorted(state["outputs"]["done"] for state in grouped["p"]) == ["ABC-0!", "ABC-1!", "ABC-2!"]
    merge = _single(grouped, "m")
    assert merge["inputs"] == {"summary": "joined ABC"}
    assert merge["outputs"] == {"final": "merged:joined ABC"}
    assert merge["parents"].get("r") == root["id"], merge["parents"]


def test_prune_signal_ends_the_branch(head: ScenarioProcess, compat_api: StateManagerAPI) -> None:
    ns, run_id = _run(head.scenario("prune"))

    states = compat_api.wait_run(ns, run_id, min_states=1, grace=1.5)
    assert len(states) == 1, f"a pruned state must not create children:\n{summarize_states(states)}"
    assert states[0]["status"] == "PRUNED", summarize_states(states)

    run = compat_api.run_summary(ns, run_id)
    assert (run["status"], run["success_count"], run["total_count"]) == ("SUCCESS", 1, 1), run


def test_requeue_after_signal_runs_the_state_again_later(
    head: ScenarioProcess, compat_api: StateManagerAPI
) -> None:
    ns, run_id = _run(head.scenario("requeue"))

    states = compat_api.wait_run(
        ns, run_id, min_states=1, until=lambda states: all(s["status"] == "SUCCESS" for s in states)
    )
    state = _single(group_by_identifier(states), "sleepy")
    assert state["outputs"] == {"calls": "2"}
    calls = head.events("sleepy")
    assert [call["call"] for call in calls] == [1, 2], calls
    gap = calls[1]["at"] - calls[0]["at"]
    assert 0.45 <= gap < 15, f"second call {gap:.2f}s after the first; asked for 0.5s"
