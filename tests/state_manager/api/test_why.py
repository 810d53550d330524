"""GET /state/{id}/why and /run/{id}/why (issue 18): why states wait, from what the server sees."""

from __future__ import annotations

from tests.factories import Api, Json, graph, node, template

A = node("Alpha")


async def _state_ids(api: Api, run_id: str) -> list[str]:
    return [state["id"] for state in await api.run_states(run_id)]


async def test_why_a_state_waits_follows_it_from_no_runtime_to_queued_to_running(api: Api) -> None:
    await api.setup("g", graph(template("a", "Alpha", {"x": "go"})), A)
    first = (await api.trigger("g"))["run_id"]
    [waiting] = await _state_ids(api, first)

    nobody: Json = await api.call("GET", f"/state/{waiting}/why")
    assert (nobody["waiting"], nobody["reason"]) == (True, "no_runtime")
    assert "Node Alpha" in nobody["detail"] and "start a runtime" in nobody["detail"]

    await api.claim("Alpha", batch_size=1)  # a runtime asks: it takes the first one
    second = (await api.trigger("g"))["run_id"]
    third = (await api.trigger("g"))["run_id"]
    [later] = await _state_ids(api, third)
    queued: Json = await api.call("GET", f"/state/{later}/why")
    assert (queued["reason"], queued["detail"]) == ("queued", "It is number 2 in the queue of node Alpha.")
    running: Json = await api.call("GET", f"/state/{waiting}/why")
    assert (running["waiting"], running["reason"], running["detail"]) == (
        False,
        None,
        "A runtime is running it.",
    )
    assert second != third


async def test_a_delayed_state_says_until_when(api: Api) -> None:
    await api.setup("g", graph(template("a", "Alpha", {"x": "go"})), A)
    run_id = (await api.call("POST", "/graph/g/trigger", {"start_delay": 60_000}))["run_id"]
    [state] = await api.run_states(run_id)

    answer: Json = await api.call("GET", f"/state/{state['id']}/why")

    assert answer["reason"] == "delayed" and answer["predicted_start_ms"] == state["enqueue_after"]


async def test_a_runs_waiting_states_are_summed_up_by_node_and_reason(api: Api) -> None:
    await api.setup("g", graph(template("a", "Alpha", {"x": "go"})), A)
    run_id = (await api.call("POST", "/graph/g/trigger", {"start_delay": 60_000}))["run_id"]

    answer: Json = await api.call("GET", f"/run/{run_id}/why")

    assert answer["waiting"] == 1
    [group] = answer["groups"]
    assert (group["node"], group["reason"], group["count"]) == ("Alpha", "delayed", 1)
    await api.call("GET", "/run/no-such-run/why", expect=404)
    await api.call("GET", "/state/000000000000000000000000/why", expect=404)
