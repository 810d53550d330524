"""After real runs (through the HTTP API, as a user and a worker), the counters and histograms
say what happened, with labels from bounded sets only."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI

from state_manager import metrics
from state_manager.db.documents import CronSchedule
from state_manager.services.context import AppContext
from state_manager.services.crons import fire_due
from tests.factories import ALPHA, BETA, NAMESPACE, Api, Worker, chain, cron, fixed_retry, now_ms
from tests.state_manager.metrics.scrape import scrape

NS = NAMESPACE
ENQUEUE_ROUTE = "/v0/namespace/{namespace_name}/states/enqueue"
TRIGGER_ROUTE = "/v0/namespace/{namespace_name}/graph/{graph_name}/trigger"
ALLOWED_LABELS = {"namespace", "graph", "node", "status", "outcome", "reason", "result", "route"}
ALLOWED_LABELS |= {"method", "code", "version", "le"}


async def test_a_successful_run_moves_run_state_queue_and_request_series(
    api: Api, client: httpx.AsyncClient
) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    run_id = (await api.trigger("g"))["run_id"]
    await Worker(api, "Alpha").execute()
    await Worker(api, "Beta").execute()
    assert await api.claim("Alpha", "Beta") == []

    m = await scrape(client)

    assert m.total("exosphere_runs_triggered_total", namespace=NS, graph="g") == 1
    assert m.total("exosphere_runs_finished_total", namespace=NS, graph="g", status="SUCCESS") == 1
    assert m.total("exosphere_run_duration_seconds_count", namespace=NS, graph="g") == 1
    assert m.has("exosphere_run_duration_seconds_bucket", le="3600.0")  # buckets up to an hour
    for node in ("Alpha", "Beta"):
        assert m.total("exosphere_states_created_total", namespace=NS, node=node) == 1
        assert m.total("exosphere_states_finished_total", namespace=NS, node=node, status="SUCCESS") == 1
        assert m.total("exosphere_state_queue_wait_seconds_count", namespace=NS, node=node) == 1
        assert m.total("exosphere_state_execution_seconds_count", namespace=NS, node=node) == 1
    assert m.has("exosphere_state_queue_wait_seconds_bucket", le="3600.0")
    assert m.total("exosphere_enqueue_requests_total", namespace=NS, result="claimed") == 2
    assert m.total("exosphere_enqueue_requests_total", namespace=NS, result="empty") == 1
    enqueues = m.total("exosphere_http_request_duration_seconds_count", route=ENQUEUE_ROUTE, method="POST")
    assert enqueues == 3
    assert m.total("exosphere_http_request_duration_seconds_count", route=TRIGGER_ROUTE, code="200") == 1

    # Bounded labels: no run or state id anywhere, only the documented label names.
    state_ids = {s["id"] for s in await api.run_states(run_id)}
    assert m.label_values().isdisjoint({run_id, *state_ids})
    assert m.label_names() <= ALLOWED_LABELS


async def test_errors_count_retries_the_final_failure_and_the_failed_run(
    api: Api, client: httpx.AsyncClient
) -> None:
    await api.setup("g", chain(retry_policy=fixed_retry(max_retries=1, delay_ms=1)), ALPHA, BETA)
    await api.trigger("g")
    await Worker(api, "Alpha").fail("first try failed")
    await asyncio.sleep(0.01)  # the retry's delay
    await Worker(api, "Alpha").fail("second try failed")

    m = await scrape(client)

    assert m.total("exosphere_state_retries_total", namespace=NS, node="Alpha", reason="error") == 1
    assert m.total("exosphere_states_created_total", namespace=NS, node="Alpha") == 2
    assert m.total("exosphere_states_finished_total", node="Alpha", status="ERRORED") == 1
    assert m.total("exosphere_states_finished_total", node="Alpha", status="SUCCESS") == 0
    assert m.total("exosphere_state_execution_seconds_count", node="Alpha") == 2
    assert m.total("exosphere_runs_finished_total", graph="g", status="FAILED") == 1
    assert m.total("exosphere_runs_finished_total", graph="g", status="SUCCESS") == 0


async def test_a_report_with_a_stale_claim_is_counted_as_fenced(api: Api, client: httpx.AsyncClient) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    await api.trigger("g")
    claimed = await Worker(api, "Alpha").claim_one()

    response = await client.post(
        api.url(f"/state/{claimed['state_id']}/executed"),
        json={"outputs": [{"y": "late"}]},
        headers={"x-exosphere-claim-token": "a-claim-superseded-long-ago"},
    )

    assert response.status_code == 409
    m = await scrape(client)
    assert m.total("exosphere_fenced_reports_total", node="Alpha", reason="claim_superseded") == 1
    assert m.total("exosphere_states_finished_total", node="Alpha") == 0
    assert m.total("exosphere_http_request_duration_seconds_count", code="409") == 1


async def test_a_cancelled_run_is_counted_once(api: Api, client: httpx.AsyncClient) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    run_id = (await api.trigger("g", {"start_delay": 600_000}))["run_id"]

    for _ in range(2):  # a repeated cancel answers the same and counts nothing more
        await api.call("POST", f"/run/{run_id}/cancel")

    m = await scrape(client)
    assert m.total("exosphere_runs_finished_total", graph="g", status="CANCELLED") == 1
    assert m.total("exosphere_runs_finished_total") == 1
    assert m.total("exosphere_states_cancelled_total") == 1


async def test_fan_out_copies_are_created_and_finished_like_any_state(
    api: Api, client: httpx.AsyncClient
) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    await api.trigger("g")
    await Worker(api, "Alpha").execute([{"y": "1"}, {"y": "2"}, {"y": "3"}])
    await Worker(api, "Beta").drain()

    m = await scrape(client)

    for node in ("Alpha", "Beta"):
        assert m.total("exosphere_states_created_total", node=node) == 3
        assert m.total("exosphere_states_finished_total", node=node, status="SUCCESS") == 3
    assert m.total("exosphere_state_execution_seconds_count", node="Alpha") == 1  # one execution
    assert m.total("exosphere_runs_finished_total", status="SUCCESS") == 1


async def test_cron_fires_are_counted(
    api: Api, client: httpx.AsyncClient, app: FastAPI, ctx: AppContext
) -> None:
    await api.setup("g", chain(triggers=[cron("* * * * *")]), ALPHA, BETA)
    await CronSchedule.get_motor_collection().update_many({}, {"$set": {"next_fire_ms": now_ms() - 60_000}})

    with metrics.active(app.state.metrics):  # as the lifespan does for the background loops
        assert await fire_due(ctx) == 1

    m = await scrape(client)
    assert m.total("exosphere_cron_fires_total", namespace=NS, graph="g", outcome="triggered") == 1
    assert m.total("exosphere_runs_triggered_total", graph="g") == 1
