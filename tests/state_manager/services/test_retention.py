"""Retention (RUN_RETENTION): a pass deletes the runs that ended longer ago than the setting, with
their states and idempotency records, and nothing else; one pass at a time.

Runs are made "old" by writing their end time in the store (time passes by writing fields, as
the simulator does); nothing sleeps.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import structlog
from fastapi import FastAPI

from state_manager import metrics
from state_manager.clock import now_ms
from state_manager.db.documents import IdempotencyKey, Lock, Run, State
from state_manager.domain.retention import cutoff_ms
from state_manager.services.context import AppContext
from state_manager.services.retention import LOCK, purge_once, purge_run
from tests.factories import ALPHA, BETA, NAMESPACE, NO_RETRY, Api, Worker, chain
from tests.state_manager.metrics.scrape import scrape

HOUR = 3_600_000


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"run_retention": "1h"}


async def _setup(api: Api) -> None:
    await api.setup("g", chain(retry_policy=NO_RETRY), ALPHA, BETA)


async def _trigger(api: Api, key: str | None = None) -> str:
    headers = {"Idempotency-Key": key} if key else {}
    answer = await api.client.post(api.url("/graph/g/trigger"), json={}, headers=headers)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["run_id"])


async def _succeeded(api: Api, key: str | None = None) -> str:
    run_id = await _trigger(api, key)
    await Worker(api, "Alpha").execute()
    await Worker(api, "Beta").execute()
    assert (await _run(api, run_id))["status"] == "SUCCESS"
    return run_id


async def _failed(api: Api) -> str:
    run_id = await _trigger(api)
    await Worker(api, "Alpha").fail("no luck")
    assert (await _run(api, run_id))["status"] == "FAILED"
    return run_id


async def _run(api: Api, run_id: str, expect: int = 200) -> Any:
    return await api.call("GET", f"/run/{run_id}", expect=expect)


async def _age(run_id: str, hours: float) -> None:
    """The run ended `hours` ago."""
    ended = await Run.get_motor_collection().update_one(
        {"run_id": run_id}, {"$set": {"finished_ms": now_ms() - int(hours * HOUR)}}
    )
    assert ended.matched_count == 1


async def _states(run_id: str) -> int:
    return len(await State.get_motor_collection().find({"run_id": run_id}).to_list(None))


async def _keys(run_id: str) -> int:
    return len(await IdempotencyKey.get_motor_collection().find({"run_id": run_id}).to_list(None))


async def test_a_pass_deletes_the_runs_that_ended_before_the_retention_and_nothing_else(
    api: Api, ctx: AppContext
) -> None:
    await _setup(api)
    old_success = await _succeeded(api, key="order-1")
    old_failed = await _failed(api)
    old_cancelled = await _trigger(api)
    await api.call("POST", f"/run/{old_cancelled}/cancel")  # nothing was running: it ends at once
    new_success = await _succeeded(api, key="order-2")
    # Cancelled two hours ago while a state of it was still settling: it has not ended yet.
    cancelled_running = await _trigger(api)
    await api.call("POST", f"/run/{cancelled_running}/cancel")
    unsettled = {"final": None, "counts": {}, "open": 1}
    await Run.get_motor_collection().update_one({"run_id": cancelled_running}, {"$set": unsettled})
    still_waiting = await _trigger(api)
    for run_id in (old_success, old_failed, old_cancelled, cancelled_running):
        await _age(run_id, hours=2)
    await _age(new_success, hours=0.5)

    report = await purge_once(ctx)

    assert report is not None
    assert (report.runs, report.states, report.idempotency_keys) == (3, 4, 1)
    for gone in (old_success, old_failed, old_cancelled):
        await _run(api, gone, expect=404)
        assert await _states(gone) == 0
        assert await _keys(gone) == 0
    for kept in (new_success, still_waiting, cancelled_running):
        assert (await _run(api, kept))["run_id"] == kept
    assert await _states(new_success) == 2
    assert await _keys(new_success) == 1
    assert await _states(cancelled_running) == 1
    # The idempotency record went with its run: the same key starts a new run.
    assert await _trigger(api, key="order-1") != old_success
    assert await _trigger(api, key="order-2") == new_success


async def test_a_pass_logs_what_it_deleted_and_the_metric_counts_the_runs(
    app: FastAPI, api: Api, ctx: AppContext, client: httpx.AsyncClient
) -> None:
    await _setup(api)
    for _ in range(3):
        await _age(await _succeeded(api), hours=5)

    with metrics.active(app.state.metrics), structlog.testing.capture_logs() as logs:
        await purge_once(ctx)
        await purge_once(ctx)  # nothing left: counted once

    assert (await scrape(client)).total("exosphere_runs_purged_total", namespace=NAMESPACE, graph="g") == 3
    purged = [line for line in logs if line["event"] == "runs_purged"]
    assert [(line["runs"], line["states"]) for line in purged] == [(3, 6), (0, 0)]
    assert purged[0]["retention_seconds"] == 3600


async def test_the_original_of_a_fork_being_written_stays_until_the_fork_is_written(
    api: Api, ctx: AppContext
) -> None:
    await _setup(api)
    original = await _succeeded(api)
    forked = (await api.call("POST", f"/run/{original}/fork", {"from": ["b"]}, expect=201))["run_id"]
    await _age(original, hours=2)
    # A crash interrupted the fork's writing: recovery will copy from the original again.
    await Run.get_motor_collection().update_one({"run_id": forked}, {"$set": {"seeded": False}})

    first = await purge_once(ctx)

    assert first is not None and (first.runs, first.kept) == (0, 1)
    assert (await _run(api, original))["status"] == "SUCCESS"

    await Run.get_motor_collection().update_one({"run_id": forked}, {"$set": {"seeded": True}})
    second = await purge_once(ctx)

    assert second is not None and second.runs == 1
    await _run(api, original, expect=404)
    assert (await _run(api, forked))["forked_from"]["run_id"] == original  # a fork needs nothing of it
    assert await _states(forked) == 2  # its copy of `a` and its own `b`


async def test_a_run_that_reopened_after_it_was_read_is_not_deleted(api: Api, ctx: AppContext) -> None:
    await _setup(api)
    run_id = await _failed(api)
    await _age(run_id, hours=2)
    read = await Run.get_motor_collection().find_one({"run_id": run_id})  # as a pass reads it

    await api.call("POST", f"/run/{run_id}/retry-failed")  # reopens the run
    purged = await purge_run(read, cutoff_ms(now_ms(), 3600))

    assert purged is None
    assert (await _run(api, run_id))["status"] == "RUNNING"
    assert await _states(run_id) == 2  # the failed attempt and its retry


async def test_two_passes_at_once_delete_each_run_once(
    app: FastAPI, api: Api, ctx: AppContext, client: httpx.AsyncClient
) -> None:
    await _setup(api)
    old = [await _succeeded(api) for _ in range(5)]
    for run_id in old:
        await _age(run_id, hours=3)

    with metrics.active(app.state.metrics):
        first, second = await asyncio.gather(
            purge_once(ctx, batch_size=2, pause=0.01), purge_once(ctx, batch_size=2, pause=0.01)
        )

    reports = [r for r in (first, second) if r is not None]
    assert len(reports) == 1, "both passes ran: the lease let two in"
    assert (reports[0].runs, reports[0].batches) == (5, 3)
    assert (await scrape(client)).total("exosphere_runs_purged_total") == 5
    for run_id in old:
        await _run(api, run_id, expect=404)
    lease = await Lock.get_motor_collection().find_one({"_id": LOCK})
    assert (lease["holder"], lease["expires_ms"], lease["work"]) == (None, 0, [])  # given back


async def test_runs_that_ended_in_the_same_millisecond_are_all_seen_across_batches(
    api: Api, ctx: AppContext
) -> None:
    await _setup(api)
    old = [await _succeeded(api) for _ in range(7)]
    original = old[3]
    forked = (await api.call("POST", f"/run/{original}/fork", {"from": ["b"]}, expect=201))["run_id"]
    await Run.get_motor_collection().update_one({"run_id": forked}, {"$set": {"seeded": False}})
    ended = now_ms() - 2 * HOUR
    await Run.get_motor_collection().update_many({"run_id": {"$in": old}}, {"$set": {"finished_ms": ended}})

    report = await purge_once(ctx, batch_size=3, pause=0)

    assert report is not None and (report.runs, report.kept) == (6, 1)
    assert [r for r in old if (await api.client.get(api.url(f"/run/{r}"))).status_code == 200] == [original]


async def test_a_pass_skips_while_another_replica_holds_the_lease(api: Api, ctx: AppContext) -> None:
    await _setup(api)
    run_id = await _succeeded(api)
    await _age(run_id, hours=2)
    held = {"_id": LOCK, "holder": "other-replica", "expires_ms": now_ms() + 60_000, "work": []}
    await Lock.get_motor_collection().insert_one(held)

    assert await purge_once(ctx) is None
    assert (await _run(api, run_id))["run_id"] == run_id

    await Lock.get_motor_collection().update_one({"_id": LOCK}, {"$set": {"expires_ms": now_ms() - 1}})
    report = await purge_once(ctx)  # the other replica died: its lease ran out

    assert report is not None and report.runs == 1
    await _run(api, run_id, expect=404)


async def test_a_pass_finishes_the_batch_a_stopped_pass_left_half_deleted(api: Api, ctx: AppContext) -> None:
    await _setup(api)
    half_deleted = await _succeeded(api, key="order-9")
    not_reached = await _succeeded(api)
    # A pass deleted the first run of its batch, then its process died before the run's states.
    await Run.get_motor_collection().delete_one({"run_id": half_deleted})
    work = [half_deleted, not_reached]
    dead = {"_id": LOCK, "holder": "dead", "expires_ms": now_ms() - 1, "work": work}
    await Lock.get_motor_collection().insert_one(dead)

    report = await purge_once(ctx)

    assert report is not None
    assert (report.resumed, report.runs, report.states, report.idempotency_keys) == (1, 0, 2, 1)
    assert await _states(half_deleted) == 0
    assert await _keys(half_deleted) == 0
    assert await _states(not_reached) == 2  # it ended just now: it stays
    assert (await Lock.get_motor_collection().find_one({"_id": LOCK}))["work"] == []


@pytest.mark.parametrize("settings_overrides", [{}])
async def test_without_run_retention_finished_runs_are_kept_forever(api: Api, ctx: AppContext) -> None:
    assert ctx.settings.run_retention is None
    await _setup(api)
    run_id = await _succeeded(api)
    await _age(run_id, hours=24 * 3650)

    assert await purge_once(ctx) is None
    assert (await _run(api, run_id))["status"] == "SUCCESS"


@pytest.mark.parametrize(
    "settings_overrides",
    [{"run_retention": "1h", "retention_interval": "50ms", "background_loops": True}],
)
async def test_the_server_runs_the_pass_every_retention_interval(api: Api) -> None:
    await _setup(api)
    run_id = await _succeeded(api)
    kept = await _succeeded(api)
    await _age(run_id, hours=2)

    for _ in range(100):
        if (await api.client.get(api.url(f"/run/{run_id}"))).status_code == 404:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the retention loop did not delete the old run")
    assert (await _run(api, kept))["status"] == "SUCCESS"


async def test_a_run_that_cannot_be_deleted_does_not_stop_the_others(
    api: Api, ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _setup(api)
    stuck, *others = [await _succeeded(api) for _ in range(3)]
    for run_id in (stuck, *others):
        await _age(run_id, hours=5)

    async def failing(doc: Any, cutoff: int) -> int | None:
        if doc["run_id"] == stuck:
            raise RuntimeError("the store refused this one")
        return await purge_run(doc, cutoff)

    monkeypatch.setattr("state_manager.services.retention.purge_run", failing)
    report = await purge_once(ctx)

    assert report is not None and report.runs == 2
    left = [doc["run_id"] async for doc in Run.get_motor_collection().find({}, {"run_id": 1})]
    assert left == [stuck]
