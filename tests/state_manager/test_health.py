"""`GET /health` asks the database, and a lost store turns every answer into a 503.

In process (the mock store, which `/health` does not ping): `DatabasePing` is given stand-in
clients; `StoreStatus.lost` is what the embedded engine's watcher thread calls when the engine
exits. The real thing (a killed or stopped engine) is in tests/e2e/test_store_watch.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from state_manager.api.health import DatabasePing
from state_manager.app import create_app
from state_manager.config import Settings
from state_manager.store.status import StoreStatus
from tests.factories import NAMESPACE
from tests.support.in_process import started

PROBLEM = "the embedded store (nx-27017) was killed by SIGKILL: the server is stopping"


class Admin:
    """`client.admin` of a stand-in database client: counts pings; answers, fails or hangs."""

    def __init__(self, behaviour: str = "answer") -> None:
        self.behaviour = behaviour
        self.pings = 0

    async def command(self, name: str) -> dict[str, Any]:
        assert name == "ping"
        self.pings += 1
        if self.behaviour == "fail":
            raise ConnectionError("127.0.0.1:27017: connection refused (a detail not to publish)")
        if self.behaviour == "hang":
            await asyncio.sleep(3600)
        return {"ok": 1.0}


class Client:
    def __init__(self, behaviour: str = "answer") -> None:
        self.admin = Admin(behaviour)


@pytest.fixture
def status() -> StoreStatus:
    return StoreStatus()


@pytest.fixture
async def guarded(settings: Settings, status: StoreStatus) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app built as `python -m state_manager` builds it: with a store status."""
    async with started(create_app(settings, store_status=status)) as client:
        yield client


async def test_health_is_ok_with_exactly_the_body_sdks_check(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"message": "OK"}


async def test_health_is_503_when_the_database_does_not_answer(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    app.state.database_ping = DatabasePing(Client("fail"))

    response = await client.get("/health")

    assert response.status_code == 503
    assert response.json() == {
        "message": "the database cannot be reached (ConnectionError)",
        "database": "unreachable",
    }
    assert "27017" not in response.text  # addresses go to the log, not to an answer without a key


async def test_a_ping_is_kept_a_second_and_never_runs_twice_at_once() -> None:
    answering = Client()
    ping = DatabasePing(answering, max_age=0.3)

    assert await ping.problem() is None
    assert await ping.problem() is None
    assert answering.admin.pings == 1
    await asyncio.sleep(0.35)
    assert await ping.problem() is None
    assert answering.admin.pings == 2

    hanging = Client("hang")
    ping = DatabasePing(hanging, timeout=0.1)
    started = time.monotonic()
    problems = await asyncio.gather(*(ping.problem() for _ in range(5)))
    assert time.monotonic() - started < 1
    assert problems == ["the database did not answer a ping within 0.1 s"] * 5
    assert await ping.problem() == "the database did not answer a ping within 0.1 s"
    assert hanging.admin.pings == 1


async def test_once_the_store_is_lost_every_answer_is_503_naming_it(
    guarded: httpx.AsyncClient, status: StoreStatus
) -> None:
    graphs = f"/v0/namespace/{NAMESPACE}/graphs/"
    assert (await guarded.get(graphs)).status_code == 200

    threading.Thread(target=status.lost, args=(PROBLEM,)).start()  # as the watcher thread does
    await asyncio.sleep(0.05)

    response = await guarded.get(graphs)
    assert response.status_code == 503
    assert response.json() == {"detail": PROBLEM}
    health = await guarded.get("/health")
    assert health.status_code == 503
    assert health.json() == {"message": PROBLEM, "database": "unreachable"}
    # The key is still checked first: nothing is said to a caller without it.
    assert (await guarded.get(graphs, headers={"x-api-key": "wrong"})).status_code == 401


async def test_a_request_in_flight_when_the_store_is_lost_is_answered_503_at_once(
    guarded: httpx.AsyncClient, status: StoreStatus
) -> None:
    enqueue = f"/v0/namespace/{NAMESPACE}/states/enqueue"
    long_poll = asyncio.create_task(
        guarded.post(enqueue, json={"nodes": ["A"], "batch_size": 1, "wait_ms": 20000})
    )
    await asyncio.sleep(0.2)
    assert not long_poll.done()

    started = time.monotonic()
    threading.Thread(target=status.lost, args=(PROBLEM,)).start()
    response = await asyncio.wait_for(long_poll, timeout=5)

    assert time.monotonic() - started < 1
    assert response.status_code == 503
    assert response.json() == {"detail": PROBLEM}
