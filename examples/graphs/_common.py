"""What every graph example needs: its own namespace, and a way to wait for a run to finish."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from exospherehost import StateManager


def unique_namespace(prefix: str) -> str:
    """A fresh namespace, so that running an example twice never mixes the two runs."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def wait_for_run(client: StateManager, run_id: str, max_wait: float = 15.0) -> list[dict[str, Any]]:
    """Poll until the run is no longer PENDING, then return its states (oldest first)."""
    deadline = time.monotonic() + max_wait
    while True:
        runs = (await client.list_runs(page=1, size=100))["runs"]
        run = next((r for r in runs if r["run_id"] == run_id), None)
        if run is not None and run["status"] != "PENDING":
            return (await client.list_states(run_id))["states"]
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} is still pending after {max_wait}s")
        await asyncio.sleep(0.05)


async def run_status(client: StateManager, run_id: str) -> str:
    """SUCCESS, FAILED or PENDING, as `GET /runs/{page}/{size}` reports it."""
    runs = (await client.list_runs(page=1, size=100))["runs"]
    return str(next(r for r in runs if r["run_id"] == run_id)["status"])


def of(states: list[dict[str, Any]], identifier: str) -> list[dict[str, Any]]:
    """The states of one graph node (several after a fan-out or a retry)."""
    return [s for s in states if s["identifier"] == identifier]
