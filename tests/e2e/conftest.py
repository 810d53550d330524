"""End-to-end fixtures: one real server on a loopback port per module, our SDK in the test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from exospherehost import StateManager
from tests.support.live_server import LiveServer, start_server

PENDING = {"CREATED", "QUEUED", "EXECUTED"}

# Short leases and a fast recovery pass, so that fault tests finish in seconds.
SERVER_ENV = {"STATE_LEASE_SECONDS": 2, "RECOVERY_INTERVAL_SECONDS": 0.2, "RECOVERY_GRACE_SECONDS": 1}


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    live = start_server(**SERVER_ENV)
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
def sdk_env(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> LiveServer:
    """Point the SDK at the server through its documented environment variables."""
    monkeypatch.setenv("EXOSPHERE_STATE_MANAGER_URI", server.base_url)
    monkeypatch.setenv("EXOSPHERE_API_KEY", server.api_key)
    return server


async def wait_run(
    client: StateManager, run_id: str, *, min_states: int = 1, timeout: float = 20.0
) -> list[dict[str, Any]]:
    """Poll the run's states until none is pending (and at least `min_states` exist)."""
    deadline = time.monotonic() + timeout
    states: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        runs = (await client.list_runs(1, 100))["runs"]
        run = next((r for r in runs if r["run_id"] == run_id), None)
        states = (await client.list_states(run_id))["states"]  # read after the run's status
        settled = all(s["status"] not in PENDING for s in states)
        if len(states) >= min_states and settled and run is not None and run["status"] != "PENDING":
            return states
        await asyncio.sleep(0.05)
    seen = [(s["identifier"], s["status"]) for s in states]
    raise AssertionError(f"run {run_id} did not settle in {timeout}s: {seen}")


def by_identifier(states: list[dict[str, Any]], identifier: str) -> list[dict[str, Any]]:
    return [s for s in states if s["identifier"] == identifier]
