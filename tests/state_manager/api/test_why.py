"""GET /state/{id}/why and /run/{id}/why (issue 18): why states wait, from what the server sees."""

from __future__ import annotations

from tests.factories import Api, Json, graph, node, now_ms, template

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


# ---------------------------------------------------------------- the reasons of flow control


def _limited(**setting: Json) -> Json:
    root = {**template("a", "Alpha", {"x": "${{ store.tenant }}"}), **setting}
    return graph(root, store_config={"default_values": {"tenant": "none"}})


async def _parked_one(api: Api, body: Json) -> tuple[Json, str]:
    """Two runs of `body`; the first claimed (and held), the second parked: (held, parked id)."""
    await api.setup("g", body, A)
    first = (await api.trigger("g", {"store": {"tenant": "acme"}}))["run_id"]
    second = (await api.trigger("g", {"store": {"tenant": "acme"}}))["run_id"]
    [held] = await api.claim("Alpha", batch_size=10)
    assert held["run_id"] == first
    [parked] = await _state_ids(api, second)
    return held, parked


async def test_a_state_held_back_by_a_concurrency_limit_names_the_holders(api: Api) -> None:
    held, parked = await _parked_one(api, _limited(concurrency={"limit": 1, "key": "${{ store.tenant }}"}))

    answer: Json = await api.call("GET", f"/state/{parked}/why")

    assert (answer["waiting"], answer["reason"], answer["blockers"]) == (
        True,
        "concurrency",
        [held["state_id"]],
    )
    assert answer["detail"] == (
        "Node Alpha runs at most 1 at once for key 'acme'; 1 of 1 are held, so it waits for a slot "
        "(it is next in line)."
    )
    await api.executed(held["state_id"], [{"y": "done"}])  # the slot frees: it is due again
    assert (await api.call("GET", f"/state/{parked}/why"))["reason"] == "queued"


async def test_a_run_held_back_by_its_graphs_run_concurrency_names_the_running_runs(api: Api) -> None:
    held, parked = await _parked_one(api, {**_limited(), "concurrency": {"limit": 1}})

    answer: Json = await api.call("GET", f"/state/{parked}/why")

    assert (answer["reason"], answer["blockers"]) == ("run_concurrency", [held["run_id"]])
    assert (
        "Graph g runs at most 1 at once; 1 of 1 are running, so this run waits to start" in answer["detail"]
    )
    state = next(s for s in await api.run_states(held["run_id"]) if s["id"] == held["state_id"])
    summary: Json = await api.call("GET", f"/run/{state['run_id']}/why")
    assert summary["waiting"] == 0  # the holder's own run waits for nothing


async def test_a_state_held_back_by_a_rate_limit_says_when_the_next_claim_is_allowed(api: Api) -> None:
    before = now_ms()
    _, parked = await _parked_one(api, _limited(rate_limit={"per_second": 0.1}))

    answer: Json = await api.call("GET", f"/state/{parked}/why")

    assert answer["reason"] == "rate_limit"
    assert "Node Alpha is claimed at most 0.1 per second; the next claim is allowed at" in answer["detail"]
    # One claim per ten seconds, the first claimed between `before` and now: the next ten later.
    assert before + 10_000 <= answer["predicted_start_ms"] <= now_ms() + 10_000


async def test_a_state_whose_join_waits_names_the_open_branches(api: Api) -> None:
    body = graph(
        template("a", "Alpha", {"x": "go"}, ["b", "c"]),
        template("b", "Beta", {"x": "${{ a.outputs.y }}"}),
        template("c", "Gamma", {"x": "${{ a.outputs.y }}"}),
        template("j", "Delta", {"x": "${{ b.outputs.y[*] }} ${{ c.outputs.y[*] }}"}, unites="a"),
    )
    await api.setup("g", body, A, node("Beta"), node("Gamma"), node("Delta"))
    run_id = (await api.trigger("g"))["run_id"]
    [a] = await api.claim("Alpha")
    await api.executed(a["state_id"], [{"y": "1"}])
    [b] = await api.claim("Beta")
    await api.executed(b["state_id"], [{"y": "done"}])
    [c] = await api.claim("Gamma")  # still running

    answer: Json = await api.call("GET", f"/state/{a['state_id']}/why")

    assert (answer["reason"], answer["blockers"]) == ("join", [c["state_id"]])
    assert answer["detail"] == "It ran; join j waits for the branches below it: 1 of 2 settled."
    summary: Json = await api.call("GET", f"/run/{run_id}/why")
    assert [group["reason"] for group in summary["groups"]] == ["join"]
    await api.executed(c["state_id"], [{"y": "done"}])
    assert (await api.call("GET", f"/state/{a['state_id']}/why"))["reason"] is None  # the join is made


async def test_a_start_is_predicted_from_running_times_reported_with_a_claim_token(api: Api) -> None:
    """Our SDK's reports (with their claim token) record the node's running time too."""
    await api.setup("g", graph(template("a", "Alpha", {"x": "go"})), A)
    await api.trigger("g")
    [done] = await api.claim("Alpha")
    token = {"x-exosphere-claim-token": done["claim_token"]}
    answer = await api.client.post(
        api.url(f"/state/{done['state_id']}/executed"), json={"outputs": [{"y": "1"}]}, headers=token
    )
    assert answer.status_code == 200
    await api.trigger("g")
    later = (await api.trigger("g"))["run_id"]
    await api.claim("Alpha", batch_size=1)  # one runs now; the other waits its turn
    [waiting] = await _state_ids(api, later)

    why: Json = await api.call("GET", f"/state/{waiting}/why")

    assert why["reason"] == "queued" and why["predicted_start_ms"] is not None
