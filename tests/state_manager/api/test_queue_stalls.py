"""A node is "stalled" when its states have been due longer than QUEUE_STALL_SECONDS and no
runtime asked for its work in that time; a runtime's poll clears it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from state_manager.services.context import AppContext
from tests.factories import ALPHA, BETA, Api, chain


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"queue_stall_seconds": 0.2}


async def _alpha(api: Api) -> Any:
    rows = {row["node_name"]: row for row in (await api.call("GET", "/queues"))["nodes"]}
    return rows["Alpha"]


async def test_work_nobody_asks_for_is_stalled_until_a_runtime_polls(api: Api, ctx: AppContext) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    await api.trigger("g")
    await api.trigger("g")
    assert not (await _alpha(api))["stalled"]  # due, but not for long yet

    await asyncio.sleep(0.3)
    stalled = await _alpha(api)
    assert stalled["stalled"] and stalled["due"] == 2 and stalled["last_poll_ms"] is None

    await api.claim("Alpha", batch_size=1)  # a runtime asks: the rest waits for it, not for nobody
    polled = await _alpha(api)
    assert not polled["stalled"] and polled["due"] == 1 and polled["last_poll_ms"] is not None

    await asyncio.sleep(0.3)  # the runtime went away again
    assert (await _alpha(api))["stalled"]
