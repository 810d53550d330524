"""Claims taken back by the recovery pass: a silent worker's lease, a node's timeout, and the
late report of the worker that lost its claim."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from state_manager import metrics
from state_manager.services.context import AppContext
from state_manager.services.recovery import recover_once
from tests.factories import ALPHA, BETA, NO_RETRY, Api, Worker, chain, fixed_retry
from tests.state_manager.metrics.scrape import scrape

LEASE_SECONDS = 0.2


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"state_lease_seconds": LEASE_SECONDS}


async def _abandon(api: Api, app: FastAPI, ctx: AppContext) -> dict[str, Any]:
    """Claim the root and go silent past the lease; one recovery pass (as the lifespan runs it)."""
    claimed = await Worker(api, "Alpha").claim_one()
    await asyncio.sleep(LEASE_SECONDS + 0.05)
    with metrics.active(app.state.metrics):
        assert (await recover_once(ctx)).leases_expired == 1
    return claimed


async def test_an_expired_lease_is_counted_with_its_retry_and_the_late_report_as_fenced(
    api: Api, client: httpx.AsyncClient, app: FastAPI, ctx: AppContext
) -> None:
    await api.setup("g", chain(retry_policy=fixed_retry(max_retries=1, delay_ms=1)), ALPHA, BETA)
    await api.trigger("g")
    claimed = await _abandon(api, app, ctx)

    await api.executed(claimed["state_id"], [{"y": "too late"}], expect=409)

    m = await scrape(client)
    assert m.total("exosphere_lease_expirations_total", node="Alpha", reason="lease_expired") == 1
    assert m.total("exosphere_state_retries_total", node="Alpha", reason="lease_expired") == 1
    assert m.total("exosphere_fenced_reports_total", node="Alpha", reason="lease_expired") == 1
    assert m.total("exosphere_states_created_total", node="Alpha") == 2  # the re-delivery
    assert m.total("exosphere_states_finished_total", node="Alpha") == 0


async def test_an_expired_lease_without_retries_left_finishes_the_state_timed_out(
    api: Api, client: httpx.AsyncClient, app: FastAPI, ctx: AppContext
) -> None:
    await api.setup("g", chain(retry_policy=NO_RETRY), ALPHA, BETA)
    await api.trigger("g")
    await _abandon(api, app, ctx)

    m = await scrape(client)
    assert m.total("exosphere_lease_expirations_total", node="Alpha", reason="lease_expired") == 1
    assert m.total("exosphere_state_retries_total") == 0
    assert m.total("exosphere_states_finished_total", node="Alpha", status="TIMEDOUT") == 1
    assert m.total("exosphere_runs_finished_total", graph="g", status="FAILED") == 1
