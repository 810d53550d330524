"""Leases that tune themselves, for clients that never heartbeat (the official SDKs send no
`wait_ms` and no claim token): a dead worker of a fast node is noticed in seconds, not after
STATE_LEASE_SECONDS, and a slow node's lease grows instead of re-delivering its work."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.factories import ALPHA, Api, Json, graph, template

SAMPLES = 5
FLOOR_MS = 400


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "state_lease_seconds": 300,
        "tuned_lease_min_samples": SAMPLES,
        "tuned_lease_floor_seconds": FLOOR_MS / 1000,
        "tuned_lease_multiplier": 10,
        "implicit_wait_ms": 0,
    }


async def _official_claim(api: Api) -> Json:
    """A claim as the official SDKs make it: no wait_ms."""
    answer = await api.call("POST", "/states/enqueue", {"nodes": ["Alpha"], "batch_size": 1})
    [state] = answer["states"]
    return state


async def _official_report(api: Api, state: Json, expect: int = 200) -> None:
    await api.call("POST", f"/states/{state['state_id']}/executed", {"outputs": [{"y": "v"}]}, expect=expect)


async def _setup(api: Api) -> None:
    await api.setup("g", graph(template("a", "Alpha", {"x": "1"})), ALPHA)


async def test_a_node_with_enough_fast_runs_gets_a_short_lease(api: Api) -> None:
    await _setup(api)
    for _ in range(SAMPLES):
        await api.trigger("g")
        state = await _official_claim(api)
        assert state["lease_ms"] > 200_000  # the default, until there are enough samples
        await _official_report(api, state)

    await api.trigger("g")
    tuned = await _official_claim(api)

    # The floor when the runs took a few ms (ten times that is less); a loaded machine may make
    # one run take longer: still far below the default 300 s.
    assert FLOOR_MS - 50 <= tuned["lease_ms"] < 60_000


async def test_our_sdk_keeps_the_default_lease_however_many_samples_there_are(api: Api) -> None:
    """Our SDK heartbeats: its claims (with wait_ms) are never given a tuned lease, though its
    reports add their running times to the node's samples (which also predict starts: why)."""
    await _setup(api)
    for _ in range(SAMPLES):
        await api.trigger("g")
        await _official_report(api, await _official_claim(api))  # the node is tuned
    await api.trigger("g")

    [ours] = await api.claim("Alpha", batch_size=1)  # sends wait_ms, like our SDK

    assert ours["lease_ms"] > 200_000


async def test_a_run_that_outlives_its_tuned_lease_grows_it(api: Api) -> None:
    await _setup(api)
    for _ in range(SAMPLES):
        await api.trigger("g")
        await _official_report(api, await _official_claim(api))
    await api.trigger("g")
    slow = await _official_claim(api)
    assert slow["lease_ms"] <= FLOOR_MS

    await asyncio.sleep(FLOOR_MS / 1000 + 0.2)  # slow, not dead: it reports after its lease ran out
    await _official_report(api, slow)
    await api.trigger("g")
    after = await _official_claim(api)

    assert after["lease_ms"] >= 2 * (FLOOR_MS + 200) - 100
