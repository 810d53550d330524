"""Long-polling claims wake when work arrives, not on a timer.

The periodic re-check (`long_poll_tick_seconds`) is set far longer than any of these tests
wait, so a wake-up that is missed shows up as a test that hangs until its guard, never as a
slow pass. The guards only stop a hang: nothing here asserts a speed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from state_manager.services.context import WorkSignal
from tests.factories import ALPHA, BETA, OTHER_NAMESPACE, Api, chain, graph, template

HANG_GUARD = 15.0


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"long_poll_tick_seconds": 120}


async def test_long_poll_returns_as_soon_as_work_arrives(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)

    waiting = asyncio.create_task(api.claim("Alpha", wait_ms=30_000))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    triggered = await api.trigger("g")
    claimed = await asyncio.wait_for(waiting, HANG_GUARD)

    assert [s["run_id"] for s in claimed] == [triggered["run_id"]]


async def test_long_poll_returns_empty_after_wait_ms_when_nothing_comes(api: Api) -> None:
    started = time.monotonic()

    claimed = await asyncio.wait_for(api.claim("Alpha", wait_ms=200), HANG_GUARD)

    assert claimed == []
    assert time.monotonic() - started >= 0.19  # it did wait


async def test_long_poll_is_not_woken_by_other_namespaces(api: Api) -> None:
    await api.register(ALPHA, namespace=OTHER_NAMESPACE)
    await api.upsert(
        "g", graph(template("a", "Alpha", {"x": "1"}, namespace=OTHER_NAMESPACE)), namespace=OTHER_NAMESPACE
    )

    waiting = asyncio.create_task(api.claim("Alpha", wait_ms=250))
    await asyncio.sleep(0.05)
    await api.call("POST", "/graph/g/trigger", {}, namespace=OTHER_NAMESPACE)

    assert await asyncio.wait_for(waiting, HANG_GUARD) == []


async def test_re_enqueue_after_wakes_a_long_poll_when_due(api: Api) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    await api.trigger("g")
    [claimed] = await api.claim("Alpha", batch_size=1)
    await api.call("POST", f"/state/{claimed['state_id']}/re-enqueue-after", {"enqueue_after": 100})

    again = await asyncio.wait_for(api.claim("Alpha", wait_ms=30_000), HANG_GUARD)

    assert [s["state_id"] for s in again] == [claimed["state_id"]]


async def test_a_notify_while_the_poll_is_querying_is_not_lost() -> None:
    """Work that appears between a poll's empty query and its wait must wake that wait."""
    signal = WorkSignal()
    seen = signal.generation("ns")  # the poll notes the generation, then queries: nothing due

    signal.notify("ns")  # work arrives while the query is running

    await asyncio.wait_for(signal.wait("ns", 120, seen), HANG_GUARD)  # returns at once


async def test_a_wait_ends_on_a_notify_of_its_namespace_only() -> None:
    signal = WorkSignal()
    waiting = asyncio.create_task(signal.wait("ns", 120, signal.generation("ns")))
    await asyncio.sleep(0.01)

    signal.notify("other")
    await asyncio.sleep(0.01)
    assert not waiting.done()
    signal.notify("ns")
    await asyncio.wait_for(waiting, HANG_GUARD)


async def test_an_enqueue_without_wait_ms_waits_briefly_for_work_like_a_long_poll(api: Api) -> None:
    """What the official SDKs send: no wait_ms. They poll in a tight loop, so an empty answer
    waits up to IMPLICIT_WAIT_MS (1 s by default), and work that arrives meanwhile is handed out
    at once."""
    await api.setup("g", chain(), ALPHA, BETA)
    started = time.monotonic()
    empty = await api.call("POST", "/states/enqueue", {"nodes": ["Alpha"], "batch_size": 16})
    assert empty["states"] == []
    assert time.monotonic() - started >= 0.95  # it waited rather than answering at once

    body = {"nodes": ["Alpha"], "batch_size": 16}
    waiting = asyncio.create_task(api.call("POST", "/states/enqueue", body))
    await asyncio.sleep(0.1)
    triggered = await api.trigger("g")
    answer = await asyncio.wait_for(waiting, HANG_GUARD)
    assert [s["run_id"] for s in answer["states"]] == [triggered["run_id"]]
