"""Cancelling a run: its waiting states are cancelled in one request, nothing new starts in it
(not even from a report in flight or the recovery pass), and its workers are told with 409."""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from state_manager.db import queries
from state_manager.db.documents import State
from state_manager.services.context import AppContext
from state_manager.services.progress import settle
from state_manager.services.recovery import recover_once
from tests.factories import (
    ALPHA,
    BETA,
    NO_RETRY,
    Api,
    Json,
    Worker,
    chain,
    fixed_retry,
    graph,
    node,
    template,
)


async def _cancel(api: Api, run_id: str, expect: int = 200) -> Any:
    return await api.call("POST", f"/run/{run_id}/cancel", expect=expect)


async def _run(api: Api, **graph_options: Any) -> str:
    await api.setup("g", chain(**graph_options), ALPHA, BETA)
    return str((await api.trigger("g"))["run_id"])


async def test_cancel_stops_a_delayed_run_and_answers_the_same_when_repeated(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    run_id = (await api.trigger("g", {"start_delay": 60_000}))["run_id"]

    first = await _cancel(api, run_id)
    again = await _cancel(api, run_id)

    assert first == again == {"run_id": run_id, "status": "CANCELLED", "cancelled_count": 1}
    [state] = await api.run_states(run_id)
    assert state["status"] == "CANCELLED" and "cancelled" in state["error"]
    assert (await api.run_summary(run_id))["status"] == "CANCELLED"
    assert await api.claim("Alpha") == []


async def test_cancel_of_an_unknown_or_ended_run(api: Api) -> None:
    assert "not found" in (await _cancel(api, "no-such-run", expect=404))["detail"]
    run_id = await _run(api)
    await Worker(api, "Alpha").execute()
    await Worker(api, "Beta").execute()

    answer = await _cancel(api, run_id, expect=409)

    assert "SUCCESS" in answer["detail"]
    assert (await api.run_summary(run_id))["status"] == "SUCCESS"


async def test_the_worker_of_a_cancelled_state_gets_409_for_every_call(api: Api) -> None:
    await api.register(node("Alpha", secrets=["k"]), BETA)
    body = graph(
        template("a", "Alpha", {"x": "1"}, ["b"]), template("b", "Beta", {"x": "2"}), secrets={"k": "v"}
    )
    await api.upsert("g", body)
    run_id = (await api.trigger("g"))["run_id"]
    held = await Worker(api, "Alpha").claim_one()
    sid = held["state_id"]

    assert (await _cancel(api, run_id))["cancelled_count"] == 1

    calls: list[tuple[str, str, Json | None]] = [
        ("POST", f"/state/{sid}/executed", {"outputs": [{"y": "late"}]}),
        ("POST", f"/state/{sid}/errored", {"error": "late"}),
        ("POST", f"/state/{sid}/prune", {"data": {}}),
        ("POST", f"/state/{sid}/heartbeat", {}),
        ("GET", f"/state/{sid}/secrets", None),
    ]
    for method, suffix, json in calls:
        answer = await api.client.request(method, api.url(suffix), json=json)
        assert answer.status_code == 409, f"{suffix}: {answer.text}"
        assert answer.json()["code"] == "STATE_CANCELLED"
    assert [s["identifier"] for s in await api.run_states(run_id)] == ["a"]


async def test_a_report_in_flight_during_the_cancel_starts_nothing(api: Api, ctx: AppContext) -> None:
    """The report's status write happened before the cancel; its effects are written after."""
    run_id = await _run(api)
    held = await Worker(api, "Alpha").claim_one()
    oid = ObjectId(held["state_id"])
    await queries.set_fields(
        oid, {"status": "EXECUTED", "outputs": {"y": "v"}, "pending_effect": "spawn"}, {}
    )
    in_flight = await queries.find_state(oid)  # what the report's request holds
    assert in_flight is not None

    await _cancel(api, run_id)
    await settle(ctx, in_flight)

    states = await api.by_identifier(run_id)
    assert [s["status"] for s in states["b"]] == ["CANCELLED"]
    assert await api.claim("Beta") == []
    assert (await api.run_summary(run_id))["status"] == "CANCELLED"


async def test_a_retry_in_flight_during_the_cancel_is_not_run(api: Api, ctx: AppContext) -> None:
    run_id = await _run(api, retry_policy=fixed_retry(3, 1))
    held = await Worker(api, "Alpha").claim_one()
    oid = ObjectId(held["state_id"])
    await queries.set_fields(
        oid, {"status": "RETRY_CREATED", "error": "flaky", "pending_effect": "spawn"}, {}
    )
    in_flight = await queries.find_state(oid)
    assert in_flight is not None

    await _cancel(api, run_id)
    await settle(ctx, in_flight)

    assert [s["status"] for s in (await api.by_identifier(run_id))["a"]] == ["RETRY_CREATED", "CANCELLED"]


async def test_the_recovery_pass_starts_nothing_in_a_cancelled_run(api: Api, ctx: AppContext) -> None:
    run_id = await _run(api)
    held = await Worker(api, "Alpha").claim_one()
    crashed = {"status": "EXECUTED", "outputs": {"y": "v"}, "pending_effect": "spawn", "updated_ms": 0}
    await State.get_motor_collection().update_one({"_id": ObjectId(held["state_id"])}, {"$set": crashed})

    await _cancel(api, run_id)
    await recover_once(ctx)

    states = await api.by_identifier(run_id)
    assert "b" not in states or [s["status"] for s in states["b"]] == ["CANCELLED"]
    assert states["a"][0]["status"] == "SUCCESS"  # its work was done: it keeps its outputs


async def test_no_join_and_no_manual_retry_in_a_cancelled_run(api: Api) -> None:
    r, s, m = node("R"), node("S"), node("M")
    body = graph(
        template("r", "R", {"x": "1"}, ["s"]),
        template("s", "S", {"x": "${{ r.outputs.y }}"}),
        template("m", "M", {"x": "joined"}, unites="r"),
        retry_policy=NO_RETRY,
    )
    await api.setup("j", body, r, s, m)
    run_id = (await api.trigger("j"))["run_id"]
    await Worker(api, "R").execute([{"y": "1"}, {"y": "2"}])
    branch = await Worker(api, "S").claim_one()

    assert (await _cancel(api, run_id))["cancelled_count"] == 2  # one claimed, one waiting
    await api.executed(branch["state_id"], [{"y": "late"}], expect=409)
    answer = await api.call(
        "POST", f"/state/{branch['state_id']}/manual-retry", {"fanout_id": "op"}, expect=409
    )

    assert "cancelled" in answer["detail"]
    assert "m" not in await api.by_identifier(run_id)
