"""The queue gauges, read from the database at scrape time (and cached a few seconds), and the
warning about states that no runtime asks for."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import structlog
from fastapi import FastAPI

from state_manager.observability import StallWatch
from state_manager.services.context import AppContext
from tests.factories import ALPHA, BETA, NAMESPACE, Api, Worker, chain, now_ms
from tests.state_manager.metrics.scrape import scrape

NS = NAMESPACE


async def test_backlog_gauges_show_due_work_that_nobody_claimed(api: Api, client: httpx.AsyncClient) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    await api.trigger("g")
    await api.trigger("g")
    await api.trigger("g", {"start_delay": 600_000})

    m = await scrape(client)

    assert m.total("exosphere_queue_backlog_states", namespace=NS, node="Alpha") == 2
    assert m.total("exosphere_queue_delayed_states", namespace=NS, node="Alpha") == 1
    assert m.total("exosphere_queue_backlog_age_seconds", namespace=NS, node="Alpha") >= 0
    assert m.total("exosphere_states_leased", namespace=NS, node="Alpha") == 0
    assert not m.has("exosphere_node_last_poll_timestamp_seconds", node="Alpha")  # never polled
    assert m.total("exosphere_queue_backlog_states", namespace=NS, node="Beta") == 0


async def test_a_claim_shows_as_leased_and_as_a_poll(api: Api, client: httpx.AsyncClient) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    await api.trigger("g")
    await api.trigger("g")
    before_ms = now_ms()
    await Worker(api, "Alpha").claim_one()

    m = await scrape(client)

    assert m.total("exosphere_states_leased", namespace=NS, node="Alpha") == 1
    assert m.total("exosphere_queue_backlog_states", namespace=NS, node="Alpha") == 1
    polled = m.total("exosphere_node_last_poll_timestamp_seconds", namespace=NS, node="Alpha")
    assert polled >= before_ms // 1000
    assert m.total("exosphere_node_stalled", node="Alpha") == 0


async def test_scrapes_within_a_few_seconds_reuse_one_read(api: Api, client: httpx.AsyncClient) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    await api.trigger("g")
    first = await scrape(client)
    await api.trigger("g")

    second = await scrape(client)

    assert first.total("exosphere_queue_backlog_states", node="Alpha") == 1
    assert second.total("exosphere_queue_backlog_states", node="Alpha") == 1  # the cached read
    assert second.has("exosphere_queue_stats_age_seconds")
    # ... while the in-memory counters are live.
    assert second.total("exosphere_runs_triggered_total") == 2


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("settings_overrides", [{"queue_stall_seconds": 0.05}])
async def test_a_stalled_node_is_warned_about_once_per_window(
    api: Api, app: FastAPI, ctx: AppContext
) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    await api.trigger("g")
    await asyncio.sleep(0.1)  # due for longer than QUEUE_STALL_SECONDS, and nobody polled
    clock = FakeClock()
    watch = StallWatch(lambda: app.state.metrics.queue_rows(ctx), window_seconds=300, clock=clock)

    with structlog.testing.capture_logs() as logs:
        first = await watch.check()
        clock.now += 299
        within_window = await watch.check()
        clock.now += 2
        next_window = await watch.check()

    assert (first, within_window, next_window) == (1, 0, 1)
    warnings = [line for line in logs if line["event"] == "queue_stalled"]
    assert len(warnings) == 2
    warning = warnings[0]
    assert warning["log_level"] == "warning"
    assert (warning["namespace"], warning["node"], warning["due"]) == (NS, "Alpha", 1)
    assert warning["last_poll_age_seconds"] is None
    assert "no runtime has asked" in warning["message"]


async def test_nothing_is_warned_about_while_work_is_fresh(api: Api, app: FastAPI, ctx: AppContext) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    await api.trigger("g")  # due now; QUEUE_STALL_SECONDS (30 s by default) has not passed

    with structlog.testing.capture_logs() as logs:
        assert await StallWatch(lambda: app.state.metrics.queue_rows(ctx)).check() == 0

    assert not [line for line in logs if line["event"] == "queue_stalled"]
