"""`GET /metrics`: Prometheus text with every documented series, behind the API key unless
METRICS_PUBLIC is set."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from state_manager import __version__
from tests.factories import API_KEY
from tests.state_manager.metrics.scrape import parse, scrape

# The list, with the Prometheus type each must have.
REQUIRED = {
    "exosphere_runs_triggered_total": "counter",
    "exosphere_runs_finished_total": "counter",
    "exosphere_run_duration_seconds": "histogram",
    "exosphere_states_created_total": "counter",
    "exosphere_states_finished_total": "counter",
    "exosphere_state_retries_total": "counter",
    "exosphere_lease_expirations_total": "counter",
    "exosphere_fenced_reports_total": "counter",
    "exosphere_state_queue_wait_seconds": "histogram",
    "exosphere_state_execution_seconds": "histogram",
    "exosphere_enqueue_requests_total": "counter",
    "exosphere_queue_backlog_states": "gauge",
    "exosphere_queue_backlog_age_seconds": "gauge",
    "exosphere_states_leased": "gauge",
    "exosphere_node_last_poll_timestamp_seconds": "gauge",
    "exosphere_cron_fires_total": "counter",
    "exosphere_http_request_duration_seconds": "histogram",
    "exosphere_build_info": "gauge",
}


@pytest.fixture
async def anonymous(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sends no key unless a test adds one."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app.state.asgi), base_url="http://t"
    ) as http:
        yield http


async def test_every_documented_series_is_exported_with_its_type(client: httpx.AsyncClient) -> None:
    found = await scrape(client)

    assert {name: found.families.get(name) for name in REQUIRED} == REQUIRED
    assert all(name.startswith("exosphere_") for name in found.families)
    assert found.total("exosphere_build_info", version=__version__) == 1


@pytest.mark.parametrize(
    "headers",
    [{}, {"x-api-key": "wrong"}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {API_KEY}"}],
    ids=["none", "wrong-header", "wrong-bearer", "not-bearer"],
)
async def test_without_the_key_it_is_refused(anonymous: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await anonymous.get("/metrics", headers=headers)

    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid API key"}
    assert "exosphere_" not in response.text


@pytest.mark.parametrize(
    "headers", [{"x-api-key": API_KEY}, {"authorization": f"Bearer {API_KEY}"}], ids=["x-api-key", "bearer"]
)
async def test_the_key_opens_it_as_a_header_or_a_bearer_token(
    anonymous: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await anonymous.get("/metrics", headers=headers)

    assert response.status_code == 200
    assert "exosphere_build_info" in parse(response.text).families


@pytest.mark.parametrize("settings_overrides", [{"metrics_public": True}])
async def test_metrics_public_opens_metrics_and_nothing_else(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/metrics")

    assert response.status_code == 200
    assert "exosphere_build_info" in parse(response.text).families
    assert (await anonymous.get("/v0/namespace/ns/runs")).status_code == 401


async def test_each_app_has_its_own_registry(client: httpx.AsyncClient, app: FastAPI) -> None:
    from state_manager.app import create_app

    other = create_app(app.state.context.settings)
    await client.get("/v0/namespace/ns/graphs/")

    assert other.state.metrics.registry is not app.state.metrics.registry
    ours = parse(app.state.metrics.render().decode())
    theirs = parse(other.state.metrics.render().decode())
    assert ours.total("exosphere_http_request_duration_seconds_count") >= 1
    assert theirs.total("exosphere_http_request_duration_seconds_count") == 0
