"""The official ``exospherehost==0.0.3`` (HEAD era), unchanged, against our state manager.

One scenario process (scenarios/sdk_0_0_3.py) registers the nodes, upserts the graphs and
triggers every run at once; each test then checks one scenario's outcome through our REST API.
The start-delay test comes first because it looks at the run while the delay is still running.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.compat import checks
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
    state = checks.single(group_by_identifier(states), "delayed")
    assert state["status"] == "SUCCESS", summarize_states(states)
    assert state["inputs"] == {"text": "later"}
    executions = head.events("delayed")
    assert len(executions) == 1, executions
    waited = executions[0]["at"] - scenario["triggered_at"]
    assert waited >= delay - 0.05, (
        f"the root ran {waited:.2f}s after trigger, before its {delay}s start_delay"
    )


def test_runs_the_official_release(head: ScenarioProcess) -> None:
    checks.assert_official_release(head, VERSION)


def test_nodes_are_registered_with_their_schemas(head: ScenarioProcess, compat_api: StateManagerAPI) -> None:
    checks.assert_nodes_registered(head, compat_api, ("chain", "secrets"))


def test_upsert_graph_polls_until_valid(head: ScenarioProcess, compat_api: StateManagerAPI) -> None:
    graphs = checks.assert_graphs_valid(
        head,
        compat_api,
        ("start_delay", "chain", "fanout", "failing", "secrets", "store", "retries", "unites", "prune"),
    )
    for graph in graphs.values():
        assert graph["validation_errors"] in ([], None), graph
    merge = next(node for node in graphs["unites"]["nodes"] if node["identifier"] == "m")
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
    _, run = checks.assert_chain_resolved(compat_api, *_run(head.scenario("chain")))
    assert run["graph_name"] == "chain", run


def test_fan_out_creates_one_child_per_output(head: ScenarioProcess, compat_api: StateManagerAPI) -> None:
    checks.assert_fan_out(compat_api, *_run(head.scenario("fanout")))


def test_failing_node_uses_the_graph_retry_policy(head: ScenarioProcess, compat_api: StateManagerAPI) -> None:
    """max_retries=1: the original attempt ends RETRY_CREATED, the single retry ends ERRORED."""
    checks.assert_failed_after_retries(compat_api, *_run(head.scenario("failing")), retries=1)


def test_secret_reaches_the_node_and_never_the_listings(
    head: ScenarioProcess, compat_api: StateManagerAPI, compat_server: LiveServer
) -> None:
    ns, run_id = _run(head.scenario("secrets"))
    checks.assert_secret_used_and_never_listed(compat_api, compat_server, ns, run_id, SECRET_VALUE)


def test_store_values_resolve_in_root_and_children(
    head: ScenarioProcess, compat_api: StateManagerAPI
) -> None:
    scenario = head.scenario("store")
    ns, run_id = _run(scenario)

    states = compat_api.wait_run(ns, run_id, min_states=2)
    assert all(state["status"] == "SUCCESS" for state in states), summarize_states(states)
    grouped = group_by_identifier(states)
    root, combine = checks.single(grouped, "root"), checks.single(grouped, "combine")
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
    after = checks.single(grouped, "after")
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
    root = checks.single(grouped, "r")
    assert root["outputs"] == {"word": "ABC"}
    assert sorted(state["outputs"]["part"] for state in grouped["s"]) == ["ABC-0", "ABC-1", "ABC-2"]
    assert sorted(state["outputs"]["done"] for state in grouped["p"]) == ["ABC-0!", "ABC-1!", "ABC-2!"]
    merge = checks.single(grouped, "m")
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
    state = checks.single(group_by_identifier(states), "sleepy")
    assert state["outputs"] == {"calls": "2"}
    calls = head.events("sleepy")
    assert [call["call"] for call in calls] == [1, 2], calls
    gap = calls[1]["at"] - calls[0]["at"]
    assert 0.45 <= gap < 15, f"second call {gap:.2f}s after the first; asked for 0.5s"


def _wait_for_event(head: ScenarioProcess, event: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not head.events(event):
        assert time.monotonic() < deadline, f"no {event} event: {head.log_tail()}"
        time.sleep(0.05)


def test_cancel_stops_a_run_while_the_official_runtime_runs_its_node(
    head: ScenarioProcess, compat_api: StateManagerAPI
) -> None:
    ns, run_id = _run(head.scenario("cancel"))
    _wait_for_event(head, "slow-started:cancel")

    answer = compat_api.send("POST", f"/v0/namespace/{ns}/run/{run_id}/cancel")
    head.release("cancel")
    _wait_for_event(head, "slow-finished:cancel")  # this SDK cannot stop its node; it reports late
    time.sleep(0.5)

    assert answer == {"run_id": run_id, "status": "CANCELLED", "cancelled_count": 1}
    states = compat_api.run_states(ns, run_id)
    assert [(s["identifier"], s["status"]) for s in states] == [("slow", "CANCELLED")], summarize_states(
        states
    )
    assert compat_api.run_summary(ns, run_id)["status"] == "CANCELLED"


def test_a_node_timeout_fails_an_official_runtimes_attempt(
    head: ScenarioProcess, compat_api: StateManagerAPI
) -> None:
    ns = head.scenario("timeout")["namespace"]
    slow = {"node_name": "HeadSlow", "namespace": ns, "identifier": "slow", "next_nodes": ["after"]}
    nodes = [
        {**slow, "inputs": {"seconds": "6", "tag": "timeout"}, "timeout_seconds": 1},
        {"node_name": "HeadUpper", "namespace": ns, "identifier": "after", "inputs": {"text": "x"}},
    ]
    body = {"secrets": {}, "nodes": nodes, "retry_policy": {"max_retries": 0}}
    compat_api.send("PUT", f"/v0/namespace/{ns}/graph/timeout", body, expected_status=201)
    run_id = compat_api.send("POST", f"/v0/namespace/{ns}/graph/timeout/trigger", {})["run_id"]

    states = compat_api.wait_run(ns, run_id, min_states=1, timeout=30)
    _wait_for_event(head, "slow-finished:timeout")  # its late report changes nothing
    time.sleep(0.5)

    [state] = compat_api.run_states(ns, run_id)
    assert state["status"] == "TIMEDOUT" and "timeout of 1s" in state["error"], summarize_states(states)
