"""Flow control (issue 18): concurrency limits per node (and per key), rate limits per node, and
run concurrency per graph, as a runtime sees them through `states/enqueue`.

The in-process store completes each call at once; the races between replicas are in
tests/state_manager/services/test_gates_interleaved.py and the e2e tests."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from state_manager.db.documents import FlowGate
from state_manager.services.context import AppContext
from tests.factories import NO_RETRY, Api, Json, fixed_retry, graph, node, now_ms, template

ALPHA, BETA = node("Alpha"), node("Beta")


def limited(concurrency: Json | None = None, rate_limit: Json | None = None, **options: Any) -> Json:
    root = template("a", "Alpha", {"x": "${{ store.tenant }}"})
    if concurrency is not None:
        root["concurrency"] = concurrency
    if rate_limit is not None:
        root["rate_limit"] = rate_limit
    return graph(root, store_config={"default_values": {"tenant": "none"}}, **options)


async def _trigger(api: Api, name: str, *tenants: str) -> list[str]:
    return [str((await api.trigger(name, {"store": {"tenant": tenant}}))["run_id"]) for tenant in tenants]


async def test_at_most_limit_states_of_a_node_are_held_at_once(api: Api) -> None:
    await api.setup("g", limited({"limit": 2}), ALPHA)
    await _trigger(api, "g", *"abcde")

    first = await api.claim("Alpha", batch_size=10)
    assert len(first) == 2
    assert await api.claim("Alpha", batch_size=10) == []  # the others wait, parked

    await api.executed(first[0]["state_id"], [{"y": "done"}])  # a slot frees
    [third] = await api.claim("Alpha", batch_size=10)
    assert third["state_id"] not in {state["state_id"] for state in first}
    assert await api.claim("Alpha", batch_size=10) == []


async def test_a_keyed_limit_holds_each_key_apart_and_a_full_key_does_not_block_others(api: Api) -> None:
    await api.setup("g", limited({"limit": 1, "key": "${{ store.tenant }}"}), ALPHA)
    await _trigger(api, "g", "acme", "acme", "acme", "zeta", "zeta")

    claimed = await api.claim("Alpha", batch_size=10)  # acme's three come first in the queue

    assert sorted(state["inputs"]["x"] for state in claimed) == ["acme", "zeta"]


async def test_parked_states_come_back_in_the_order_they_were_due(api: Api) -> None:
    await api.setup("g", limited({"limit": 1}), ALPHA)
    runs = await _trigger(api, "g", "1", "2", "3")
    urgent = str((await api.trigger("g", {"store": {"tenant": "u"}, "priority": 600}))["run_id"])

    order = []
    while claimed := await api.claim("Alpha", batch_size=10):
        [state] = claimed
        order.append(state["run_id"])
        await api.executed(state["state_id"], [{"y": "done"}])

    assert order == [urgent, *runs]


@pytest.mark.parametrize("how", ["errored", "cancel", "re-enqueue-after", "prune"])
async def test_every_end_of_an_attempt_gives_its_slot_back(api: Api, how: str) -> None:
    await api.setup("g", limited({"limit": 1}, retry_policy=fixed_retry(1, 10_000)), ALPHA)
    first, second = await _trigger(api, "g", "1", "2")
    [held] = await api.claim("Alpha", batch_size=10)
    assert held["run_id"] == first
    state_id = held["state_id"]
    if how == "errored":
        await api.errored(state_id)  # its retry waits 10 s
    elif how == "cancel":
        await api.call("POST", f"/run/{first}/cancel", {})
    elif how == "re-enqueue-after":
        await api.call("POST", f"/state/{state_id}/re-enqueue-after", {"enqueue_after": 60_000})
    else:
        await api.call("POST", f"/state/{state_id}/prune", {"data": {}})

    [next_one] = await api.claim("Alpha", batch_size=10)
    assert next_one["run_id"] == second


async def test_a_key_can_come_from_an_ancestors_outputs(api: Api) -> None:
    b = {
        **template("b", "Beta", {"x": "${{ a.outputs.y }}"}),
        "concurrency": {"limit": 1, "key": "${{ a.outputs.y }}"},
    }
    await api.setup("g", graph(template("a", "Alpha", {"x": "go"}, ["b"]), b), ALPHA, BETA)
    for account in ("k1", "k1", "k2"):
        await api.trigger("g")
        [a] = await api.claim("Alpha")
        await api.executed(a["state_id"], [{"y": account}])

    claimed = await api.claim("Beta", batch_size=10)

    assert sorted(state["inputs"]["x"] for state in claimed) == ["k1", "k2"]


async def test_a_rate_limit_allows_its_burst_then_one_per_interval(api: Api) -> None:
    await api.setup("g", limited(rate_limit={"per_second": 4, "burst": 2}), ALPHA)
    await _trigger(api, "g", *"abcdef")

    assert len(await api.claim("Alpha", batch_size=10)) == 2  # the burst
    assert await api.claim("Alpha", batch_size=10) == []
    await asyncio.sleep(0.3)  # a quarter of a second per claim at 4 per second
    assert len(await api.claim("Alpha", batch_size=10)) == 1


async def test_a_rate_limits_key_keeps_tenants_apart(api: Api) -> None:
    await api.setup("g", limited(rate_limit={"per_second": 0.1, "key": "${{ store.tenant }}"}), ALPHA)
    await _trigger(api, "g", "acme", "acme", "zeta")

    claimed = await api.claim("Alpha", batch_size=10)

    assert sorted(state["inputs"]["x"] for state in claimed) == ["acme", "zeta"]


async def test_run_concurrency_keeps_runs_pending_and_starts_them_in_order(api: Api) -> None:
    body = graph(
        template("a", "Alpha", {"x": "go"}, ["b"]),
        template("b", "Beta", {"x": "${{ a.outputs.y }}"}),
        retry_policy=NO_RETRY,
    )
    await api.setup("g", {**body, "concurrency": {"limit": 1}}, ALPHA, BETA)
    runs = [str((await api.trigger("g"))["run_id"]) for _ in range(3)]

    started = []
    for _ in runs:
        [a] = await api.claim("Alpha", batch_size=10)
        started.append(a["run_id"])
        assert await api.claim("Alpha", batch_size=10) == []  # the next run waits for the slot
        assert [(await api.run_summary(run))["status"] for run in runs if run not in started] == [
            "PENDING"
        ] * (len(runs) - len(started))
        await api.executed(a["state_id"], [{"y": "1"}])
        assert await api.claim("Alpha", batch_size=10) == []  # held until the run ends, not the node
        [b] = await api.claim("Beta")
        await api.executed(b["state_id"], [{"y": "2"}])

    assert started == runs


async def test_a_limit_taken_off_by_an_upsert_lets_the_parked_states_go(api: Api, ctx: AppContext) -> None:
    await api.setup("g", limited({"limit": 1}), ALPHA)
    await _trigger(api, "g", *"abc")
    assert len(await api.claim("Alpha", batch_size=10)) == 1

    await api.upsert("g", limited())

    assert len(await api.claim("Alpha", batch_size=10)) == 2


async def test_a_slot_a_crash_never_gave_back_is_taken_back_when_the_gate_is_full(api: Api) -> None:
    await api.setup("g", limited({"limit": 1}, retry_policy=NO_RETRY), ALPHA)
    await _trigger(api, "g", "1")
    [done] = await api.claim("Alpha")
    await api.executed(done["state_id"], [{"y": "done"}])
    # A process that died between a report and giving the slot back, a minute ago: its holder
    # is still counted, though its state holds nothing.
    [gate] = [doc async for doc in FlowGate.get_motor_collection().find({})]
    stale = f"holders.{done['state_id']}_{'0' * 32}"
    await FlowGate.get_motor_collection().update_one(
        {"_id": gate["_id"]}, {"$set": {stale: now_ms() - 60_000}, "$inc": {"held": 1}}
    )
    await _trigger(api, "g", "2")

    [second] = await api.claim("Alpha")

    assert second["inputs"]["x"] == "2"
    [gate] = [doc async for doc in FlowGate.get_motor_collection().find({})]
    assert gate["held"] == 1 and stale.split(".")[1] not in gate["holders"]


async def test_a_slot_taken_moments_ago_is_held_whatever_its_state_says(api: Api) -> None:
    """A claim that took a slot may still be writing its state: its holder is not taken back."""
    await api.setup("g", limited({"limit": 1}, retry_policy=NO_RETRY), ALPHA)
    await _trigger(api, "g", "1")
    [gate_id] = [doc["_id"] async for doc in FlowGate.get_motor_collection().find({})] or [None]
    assert gate_id is None  # no gate until a claim asks
    [done] = await api.claim("Alpha")
    await api.executed(done["state_id"], [{"y": "done"}])
    [gate] = [doc async for doc in FlowGate.get_motor_collection().find({})]
    await FlowGate.get_motor_collection().update_one(
        {"_id": gate["_id"]},
        {"$set": {f"holders.{done['state_id']}_{'1' * 32}": now_ms()}, "$inc": {"held": 1}},
    )
    await _trigger(api, "g", "2")

    assert await api.claim("Alpha") == []


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"concurrency": {"limit": 0}}, "concurrency.limit of node a must be at least 1"),
        (
            {"concurrency": {"limit": 2, "key": "${{ store.nope }}"}},
            "concurrency.key of node a references store key nope",
        ),
        (
            {"concurrency": {"limit": 2, "key": "${{ b.outputs.y }}"}},
            "concurrency.key of node a references b, which is not an ancestor of a",
        ),
        ({"concurrency": {"limit": 2, "key": "${{ store.tenant"}}, "concurrency.key of node a"),
        ({"rate_limit": {"per_second": 0}}, "rate_limit.per_second of node a must be above 0"),
        ({"rate_limit": {"per_second": 1, "burst": 0}}, "rate_limit.burst of node a must be at least 1"),
    ],
)
async def test_a_bad_setting_is_refused_with_a_400_naming_it(api: Api, setting: Json, message: str) -> None:
    await api.register(ALPHA, BETA)
    body = graph(
        {**template("a", "Alpha", {"x": "go"}, ["b"]), **setting},
        template("b", "Beta", {"x": "${{ a.outputs.y }}"}),
        store_config={"default_values": {"tenant": "none"}},
    )
    answer = await api.upsert("g", body, expect=400)
    assert message in str(answer)


async def test_a_graphs_run_key_may_name_store_keys_only(api: Api) -> None:
    await api.register(ALPHA)
    body = {
        **graph(template("a", "Alpha", {"x": "go"})),
        "concurrency": {"limit": 1, "key": "${{ a.outputs.y }}"},
    }
    answer = await api.upsert("g", body, expect=400)
    assert "concurrency.key of the graph references a: a graph's key may reference only store keys" in str(
        answer
    )
    assert "limit" in str(await api.upsert("g", {**body, "concurrency": {"limit": -1}}, expect=400))


async def test_metrics_and_queues_count_the_states_a_limit_holds_back(api: Api) -> None:
    await api.setup("g", limited({"limit": 1}), ALPHA)
    await _trigger(api, "g", *"abc")
    await api.claim("Alpha", batch_size=10)  # one claimed, two parked

    [row] = (await api.call("GET", "/queues"))["nodes"]
    scraped = (await api.client.get("/metrics")).text

    assert (row["due"], row["held_back"], row["claimed"]) == (0, {"concurrency": 2}, 1)
    assert 'exosphere_states_waiting{namespace="testns",node="Alpha",reason="concurrency"} 2.0' in scraped


async def test_a_key_made_of_a_big_output_still_keys_the_limit(api: Api) -> None:
    key = {"limit": 1, "key": "${{ a.outputs.y }}"}
    b = {**template("b", "Beta", {"x": "${{ a.outputs.y }}"}), "concurrency": key}
    await api.setup("g", graph(template("a", "Alpha", {"x": "go"}, ["b"]), b), ALPHA, BETA)
    for account in ("k" * 50_000 + "1", "k" * 50_000 + "1", "k" * 50_000 + "2"):
        await api.trigger("g")
        [a] = await api.claim("Alpha")
        await api.executed(a["state_id"], [{"y": account}])

    claimed = await api.claim("Beta", batch_size=10)

    assert sorted(state["inputs"]["x"][-1] for state in claimed) == ["1", "2"]
    [gate, _] = [doc async for doc in FlowGate.get_motor_collection().find({})]
    assert len(gate["_id"]) < 200
