"""Effects that cannot be written never wedge anything: one failing state is failed visibly, its
joins are evaluated, its run ends, and everything else is still recovered.

A state whose effects always fail is made the way a crash plus a corrupted document would leave
it: EXECUTED with a pending "spawn", and the `parents` entry its child's inputs need is not a
state id.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from bson import ObjectId
from fastapi import FastAPI

from state_manager.db.documents import State
from state_manager.services.context import AppContext
from state_manager.services.recovery import recover_once
from tests.factories import ALPHA, API_KEY, BETA, NO_RETRY, Api, Json, Worker, chain, graph, node, template

HEADERS = {"x-api-key": API_KEY}
ATTEMPTS = 3
LIMIT = 4096


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "effect_attempts": ATTEMPTS,
        "max_document_bytes": LIMIT,
        "recovery_batch_size": 2,
        "recovery_grace_seconds": 0,
    }


async def _passes(ctx: AppContext, count: int) -> None:
    """Recovery passes, each after the previous one's take-over has gone stale."""
    for _ in range(count):
        await asyncio.sleep(0.005)
        await recover_once(ctx)


Q, R, S, T, M = node("Q"), node("R"), node("S"), node("T"), node("M")


def joined() -> Json:
    """q -> r -> s -> t, where t reads q's output; m unites r."""
    return graph(
        template("q", "Q", {"x": "start"}, ["r"]),
        template("r", "R", {"x": "${{ q.outputs.y }}"}, ["s"]),
        template("s", "S", {"x": "${{ r.outputs.y }}"}, ["t"]),
        template("t", "T", {"x": "${{ q.outputs.y }} ${{ s.outputs.y }}"}),
        template("m", "M", {"x": "joined"}, unites="r"),
        retry_policy=NO_RETRY,
    )


async def _crash_after_report(state_id: str, fields: dict[str, Any]) -> None:
    """Leave a state as a process that died right after recording its report would."""
    crashed = {"status": "EXECUTED", "lease_expires_at": None, "pending_effect": "spawn", "updated_ms": 0}
    await State.get_motor_collection().update_one(
        {"_id": ObjectId(state_id)}, {"$set": {**crashed, **fields}}
    )


async def _poisoned_run(api: Api) -> tuple[str, Json]:
    """A run whose `s` state was reported and whose effects can never be written."""
    await api.setup("j", joined(), Q, R, S, T, M)
    run_id = str((await api.trigger("j"))["run_id"])
    await Worker(api, "Q").execute([{"y": "q-out"}])
    await Worker(api, "R").execute([{"y": "r-out"}])
    s = await Worker(api, "S").claim_one()
    [stored] = (await api.by_identifier(run_id))["s"]
    parents = {**stored["parents"], "q": "not-a-state-id"}
    await _crash_after_report(s["state_id"], {"outputs": {"y": "s-out"}, "parents": parents})
    return run_id, s


async def _healthy_crashed_run(api: Api) -> str:
    await api.setup("g", chain(retry_policy=NO_RETRY), ALPHA, BETA)
    run_id = str((await api.trigger("g"))["run_id"])
    a = await Worker(api, "Alpha").claim_one()
    await _crash_after_report(a["state_id"], {"outputs": {"y": "v"}})
    return run_id


async def test_one_poisoned_state_does_not_stop_the_recovery_of_others(api: Api, ctx: AppContext) -> None:
    poisoned_run, _ = await _poisoned_run(api)
    healthy_runs = [await _healthy_crashed_run(api) for _ in range(3)]

    report = await recover_once(ctx)

    assert (report.effects_completed, report.failures) == (3, 1)
    for run_id in healthy_runs:  # more than one batch of two: every batch was read
        assert [s["inputs"] for s in (await api.by_identifier(run_id))["b"]] == [{"x": "from a: v"}]
    assert (await api.run_summary(poisoned_run))["status"] == "PENDING"  # not given up yet


async def test_a_state_whose_effects_keep_failing_fails_visibly_and_its_run_ends(
    api: Api, ctx: AppContext
) -> None:
    run_id, s = await _poisoned_run(api)

    await _passes(ctx, ATTEMPTS)

    states = await api.by_identifier(run_id)
    [failed] = states["s"]
    assert failed["status"] == "NEXT_CREATED_ERROR"
    assert f"after {ATTEMPTS} attempts" in failed["error"] and "InvalidId" in failed["error"]
    [join] = states["m"]  # the join above it was evaluated: ALL_SUCCESS cannot be met
    assert join["status"] == "CANCELLED" and "s" in join["error"]
    assert (await api.run_summary(run_id))["status"] == "FAILED"
    stored = await State.get_motor_collection().find_one({"_id": ObjectId(s["state_id"])})
    assert stored["pending_effect"] is None
    await asyncio.sleep(0.005)
    assert (await recover_once(ctx)).failures == 0  # nothing is left to retry


async def test_a_repeated_report_is_not_200_while_its_effects_cannot_be_written(
    api: Api, ctx: AppContext, app: FastAPI
) -> None:
    _, s = await _poisoned_run(api)
    report = {"outputs": [{"y": "s-out"}]}
    # As a client sees it: the server's 500 answer rather than the exception itself.
    transport = httpx.ASGITransport(app=app.state.asgi, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=HEADERS) as client:
        repeat = await client.post(api.url(f"/state/{s['state_id']}/executed"), json=report)
        assert repeat.status_code == 500  # the effects were tried again, and failed again

        await _passes(ctx, ATTEMPTS)
        repeat = await client.post(api.url(f"/state/{s['state_id']}/executed"), json=report)
    assert repeat.status_code == 409
    assert "could not be written" in repeat.json()["detail"]


async def test_a_report_whose_child_would_be_too_large_is_413_on_every_try(api: Api) -> None:
    await api.setup("g", chain(retry_policy=NO_RETRY), ALPHA, BETA)
    run_id = str((await api.trigger("g"))["run_id"])
    a = await Worker(api, "Alpha").claim_one()
    big = {"outputs": [{"y": "x" * LIMIT}]}

    for _ in range(2):  # the first report and the SDK's retry of it
        answer = await api.client.post(api.url(f"/state/{a['state_id']}/executed"), json=big)
        assert answer.status_code == 413, answer.text
        assert "node b" in answer.json()["detail"] and str(LIMIT) in answer.json()["detail"]

    states = await api.by_identifier(run_id)
    assert "b" not in states
    assert states["a"][0]["status"] == "NEXT_CREATED_ERROR"
    assert "over the store's limit" in states["a"][0]["error"]
    assert (await api.run_summary(run_id))["status"] == "FAILED"


async def test_a_join_too_large_for_the_store_is_cancelled_with_the_reason(api: Api) -> None:
    body = graph(
        template("r", "R", {"x": "start"}, ["s"]),
        template("s", "S", {"x": "small"}),
        template("m", "M", {"x": "${{ r.outputs.y }}"}, unites="r"),
        retry_policy=NO_RETRY,
    )
    await api.setup("j", body, R, S, M)
    run_id = str((await api.trigger("j"))["run_id"])
    await Worker(api, "R").execute([{"y": "x" * LIMIT}])
    await Worker(api, "S").drain()

    states = await api.by_identifier(run_id)
    [join] = states["m"]
    assert join["status"] == "CANCELLED" and "over the store's limit" in join["error"]
    assert (await api.run_summary(run_id))["status"] == "FAILED"


async def test_two_replicas_racing_on_one_report_and_one_recovery_create_each_state_once(
    api: Api, ctx: AppContext
) -> None:
    await api.setup("g", chain(retry_policy=NO_RETRY), ALPHA, BETA)
    run_id = str((await api.trigger("g"))["run_id"])
    a = await Worker(api, "Alpha").claim_one()
    report = {"outputs": [{"y": "1"}, {"y": "2"}, {"y": "3"}]}
    url = api.url(f"/state/{a['state_id']}/executed")

    answers = await asyncio.gather(*(api.client.post(url, json=report) for _ in range(3)))
    await asyncio.gather(recover_once(ctx), recover_once(ctx))

    assert [answer.status_code for answer in answers] == [200, 200, 200]
    states = await api.by_identifier(run_id)
    assert len(states["a"]) == 3
    assert sorted(s["inputs"]["x"] for s in states["b"]) == ["from a: 1", "from a: 2", "from a: 3"]
