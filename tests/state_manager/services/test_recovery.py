"""The recovery pass: abandoned work is re-delivered, crashed effects are completed, runs are seeded.

Crashes are simulated by writing documents the way an interrupted request would have left them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from bson import ObjectId

from state_manager.db import queries
from state_manager.db.documents import Run, State
from state_manager.services.context import AppContext
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
    now_ms,
    template,
)

LEASE_SECONDS = 0.2


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"state_lease_seconds": LEASE_SECONDS}


async def _claimed_root(api: Api, retry_policy: Json) -> Json:
    await api.setup("g", chain(retry_policy=retry_policy), ALPHA, BETA)
    await api.trigger("g")
    return await Worker(api, "Alpha").claim_one()


async def _abandoned(api: Api, ctx: AppContext, retry_policy: Json) -> Json:
    """A claimed root whose worker went silent past the lease, after one recovery pass."""
    state = await _claimed_root(api, retry_policy)
    await asyncio.sleep(LEASE_SECONDS + 0.05)
    report = await recover_once(ctx)
    assert report.leases_expired == 1
    return state


async def _write(state_id: str, fields: dict[str, Any]) -> None:
    await State.get_motor_collection().update_one({"_id": ObjectId(state_id)}, {"$set": fields})


async def test_an_expired_lease_redelivers_the_work(api: Api, ctx: AppContext) -> None:
    state = await _abandoned(api, ctx, fixed_retry(1, 1))

    states = (await api.by_identifier(state["run_id"]))["a"]
    old = next(s for s in states if s["id"] == state["state_id"])
    [new] = [s for s in states if s["id"] != state["state_id"]]
    assert old["status"] == "RETRY_CREATED"
    assert "lease" in old["error"].lower()
    assert (new["status"], new["retry_count"], new["inputs"]) == ("CREATED", 1, old["inputs"])
    await asyncio.sleep(0.01)
    again = await Worker(api, "Alpha").execute([{"y": "second worker"}])
    assert again["state_id"] == new["id"]
    assert [s["inputs"] for s in (await api.by_identifier(state["run_id"]))["b"]] == [
        {"x": "from a: second worker"}
    ]


async def test_a_late_report_from_the_old_worker_is_refused_and_changes_nothing(
    api: Api, ctx: AppContext
) -> None:
    state = await _abandoned(api, ctx, fixed_retry(1, 1))
    before = await api.run_states(state["run_id"])
    sid = state["state_id"]

    executed = await api.executed(sid, [{"y": "late"}], expect=409)
    await api.errored(sid, "late", expect=409)
    await api.call("POST", f"/state/{sid}/heartbeat", expect=409)
    await api.call("POST", f"/state/{sid}/prune", {"data": {}}, expect=409)

    assert "lease" in executed["detail"]
    after = await api.run_states(state["run_id"])
    assert [(s["id"], s["status"], s["outputs"]) for s in after] == [
        (s["id"], s["status"], s["outputs"]) for s in before
    ]


async def test_an_expired_lease_without_retries_times_out_and_fails_the_run(
    api: Api, ctx: AppContext
) -> None:
    state = await _abandoned(api, ctx, NO_RETRY)

    [stored] = await api.run_states(state["run_id"])
    assert stored["status"] == "TIMEDOUT"
    assert "lease" in stored["error"].lower()
    summary = await api.run_summary(state["run_id"])
    assert (summary["status"], summary["errored_count"]) == ("FAILED", 1)
    await api.executed(state["state_id"], [{"y": "late"}], expect=409)


async def test_a_heartbeat_keeps_the_lease(api: Api, ctx: AppContext) -> None:
    state = await _claimed_root(api, fixed_retry(1, 1))
    await asyncio.sleep(LEASE_SECONDS * 0.6)
    await api.call("POST", f"/state/{state['state_id']}/heartbeat")
    await asyncio.sleep(LEASE_SECONDS * 0.6)

    report = await recover_once(ctx)

    assert report.leases_expired == 0
    assert (await api.state(state["run_id"], state["state_id"]))["status"] == "QUEUED"
    await api.executed(state["state_id"], [{"y": "in time"}])


async def test_a_live_lease_is_left_alone(api: Api, ctx: AppContext) -> None:
    state = await _claimed_root(api, fixed_retry(1, 1))

    report = await recover_once(ctx)

    assert report.leases_expired == 0
    assert len(await api.run_states(state["run_id"])) == 1


async def test_interrupted_next_state_creation_is_completed(api: Api, ctx: AppContext) -> None:
    state = await _claimed_root(api, NO_RETRY)
    # The process died right after recording the report, before creating the children.
    await _write(
        state["state_id"],
        {
            "status": "EXECUTED",
            "outputs": {"y": "v1"},
            "fanout_outputs": [{"y": "v2"}],
            "lease_expires_at": None,
            "pending_effect": "spawn",
            "updated_ms": 0,
        },
    )

    report = await recover_once(ctx)
    await recover_once(ctx)

    assert report.effects_completed >= 1
    states = await api.by_identifier(state["run_id"])
    assert [s["status"] for s in states["a"]] == ["SUCCESS", "SUCCESS"]
    assert sorted(s["inputs"]["x"] for s in states["b"]) == ["from a: v1", "from a: v2"]
    assert (await api.run_summary(state["run_id"]))["status"] == "PENDING"


async def test_completing_effects_after_children_were_written_creates_no_duplicates(
    api: Api, ctx: AppContext
) -> None:
    state = await _claimed_root(api, NO_RETRY)
    await api.executed(state["state_id"], [{"y": "v"}])
    # As if the process died after writing the child but before marking the parent.
    await _write(state["state_id"], {"status": "EXECUTED", "pending_effect": "spawn", "updated_ms": 0})

    await recover_once(ctx)

    states = await api.by_identifier(state["run_id"])
    assert states["a"][0]["status"] == "SUCCESS"
    assert len(states["b"]) == 1


async def test_interrupted_retry_creation_is_completed(api: Api, ctx: AppContext) -> None:
    state = await _claimed_root(api, fixed_retry(2, 1))
    await _write(
        state["state_id"],
        {"status": "RETRY_CREATED", "error": "boom", "pending_effect": "spawn", "updated_ms": 0},
    )

    await recover_once(ctx)

    states = (await api.by_identifier(state["run_id"]))["a"]
    assert sorted((s["status"], s["retry_count"]) for s in states) == [("CREATED", 1), ("RETRY_CREATED", 0)]


async def test_recent_pending_effects_are_left_to_their_request(api: Api, ctx: AppContext) -> None:
    state = await _claimed_root(api, NO_RETRY)
    await _write(
        state["state_id"],
        {"status": "EXECUTED", "outputs": {"y": "v"}, "pending_effect": "spawn"},  # updated just now
    )

    report = await recover_once(ctx)

    assert report.effects_completed == 0
    assert (await api.state(state["run_id"], state["state_id"]))["status"] == "EXECUTED"


async def test_an_unseeded_run_gets_its_root_state(api: Api, ctx: AppContext) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    run_id = (await api.trigger("g", {"inputs": {"x": "given"}}))["run_id"]
    # As if the process died after writing the run, before writing its root state.
    await State.get_motor_collection().delete_many({"run_id": run_id})
    await Run.get_motor_collection().update_one(
        {"run_id": run_id}, {"$set": {"seeded": False, "created_ms": 0}}
    )
    assert await api.run_states(run_id) == []

    report = await recover_once(ctx)
    await recover_once(ctx)

    assert report.runs_seeded == 1
    [root] = await api.run_states(run_id)
    assert (root["identifier"], root["status"], root["inputs"]) == ("a", "CREATED", {"x": "given"})
    claimed = await Worker(api, "Alpha").claim_one()
    assert claimed["run_id"] == run_id


async def test_recovery_passes_running_at_once_redeliver_once(api: Api, ctx: AppContext) -> None:
    state = await _claimed_root(api, fixed_retry(1, 1))
    await asyncio.sleep(LEASE_SECONDS + 0.05)

    await asyncio.gather(recover_once(ctx), recover_once(ctx), recover_once(ctx))

    states = (await api.by_identifier(state["run_id"]))["a"]
    assert sorted(s["status"] for s in states) == ["CREATED", "RETRY_CREATED"]


def _join_graph() -> Json:
    """r -> s; m unites r (ALL_SUCCESS) and reads r's output."""
    return graph(
        template("r", "Alpha", {"x": "start"}, ["s"]),
        template("s", "Beta", {"x": "${{ r.outputs.y }}"}),
        template("m", "Gamma", {"x": "${{ r.outputs.y }}"}, unites="r"),
        retry_policy=NO_RETRY,
    )


async def test_a_timed_out_branch_settles_the_join_above_it(api: Api, ctx: AppContext) -> None:
    await api.setup("j", _join_graph(), ALPHA, BETA, node("Gamma"))
    run_id = (await api.trigger("j"))["run_id"]
    await Worker(api, "Alpha").execute([{"y": "root"}])
    await Worker(api, "Beta").claim_one()
    await asyncio.sleep(LEASE_SECONDS + 0.05)

    await recover_once(ctx)

    states = await api.by_identifier(run_id)
    assert states["s"][0]["status"] == "TIMEDOUT"
    [join] = states["m"]
    assert join["status"] == "CANCELLED"
    assert "s" in join["error"]
    assert (await api.run_summary(run_id))["status"] == "FAILED"


async def test_an_interrupted_join_evaluation_is_completed(api: Api, ctx: AppContext) -> None:
    await api.setup("j", _join_graph(), ALPHA, BETA, node("Gamma"))
    run_id = (await api.trigger("j"))["run_id"]
    await Worker(api, "Alpha").execute([{"y": "root"}])
    last = await Worker(api, "Beta").execute()
    # As if the process died after marking the last branch, before evaluating the join.
    await State.get_motor_collection().delete_many({"run_id": run_id, "identifier": "m"})
    await _write(last["state_id"], {"pending_effect": "joins", "updated_ms": 0})
    assert (await api.run_summary(run_id))["status"] == "PENDING"

    await recover_once(ctx)

    [join] = (await api.by_identifier(run_id))["m"]
    assert (join["status"], join["inputs"]) == ("CREATED", {"x": "root"})


async def test_of_two_replicas_only_one_takes_over_a_stale_effect(api: Api, ctx: AppContext) -> None:
    state = await _claimed_root(api, NO_RETRY)
    crashed = {"status": "EXECUTED", "outputs": {"y": "v"}, "lease_expires_at": None}
    await _write(state["state_id"], {**crashed, "pending_effect": "spawn", "updated_ms": 0})
    stale_before = now_ms()  # what both replicas' passes computed

    taken = [await queries.take_stale(ObjectId(state["state_id"]), "spawn", stale_before) for _ in range(2)]
    report = await recover_once(ctx)  # a third pass, while the taker is still on it

    assert taken == [True, False]
    assert report.effects_completed == 0


async def test_a_settle_still_in_progress_is_not_taken_over(api: Api, ctx: AppContext) -> None:
    state = await _claimed_root(api, NO_RETRY)
    # Reported a moment ago: the request is still writing its effects.
    await _write(
        state["state_id"],
        {
            "status": "EXECUTED",
            "outputs": {"y": "v"},
            "lease_expires_at": None,
            "pending_effect": "spawn",
            "updated_ms": now_ms(),
        },
    )

    report = await recover_once(ctx)

    assert report.effects_completed == 0
    assert "b" not in await api.by_identifier(state["run_id"])


async def test_a_fork_a_crash_interrupted_is_written_in_full_by_recovery(api: Api, ctx: AppContext) -> None:
    """As if the process died after writing the fork's run, before its states: recovery writes
    the same states (same ids), and the fork runs to its end."""
    await api.setup("j", _join_graph(), ALPHA, BETA, node("Gamma"))
    original = (await api.trigger("j"))["run_id"]
    await Worker(api, "Alpha").execute([{"y": "root"}])
    await Worker(api, "Beta").execute()
    await Worker(api, "Gamma").execute()
    forked = await api.call("POST", f"/run/{original}/fork", {"from": ["s"]}, expect=201)
    new = forked["run_id"]
    written = sorted(s["id"] for s in await api.run_states(new))
    await State.get_motor_collection().delete_many({"run_id": new})
    await Run.get_motor_collection().update_one({"run_id": new}, {"$set": {"seeded": False, "created_ms": 1}})

    await recover_once(ctx)

    assert sorted(s["id"] for s in await api.run_states(new)) == written
    await Worker(api, "Beta").execute()
    await Worker(api, "Gamma").execute()
    assert (await api.run_summary(new))["status"] == "SUCCESS"
