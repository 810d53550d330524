"""The database command counter (`db/monitoring.py`) and its debug endpoints (`api/debug.py`).

The router is tested in a small app of its own, built the way `create_app` mounts it when
`COUNT_DB_COMMANDS` is on (counter in `app.state.db_command_counter`, router under `/v0`).
Real commands come from a Motor client talking to nx-27017 over the wire.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI
from motor.motor_asyncio import AsyncIOMotorClient

from state_manager.api import debug
from state_manager.db.monitoring import CommandCounter, install_command_counter
from tests.support.durable_store import durable_store


def debug_app(counter: CommandCounter | None) -> FastAPI:
    app = FastAPI()
    if counter is not None:
        app.state.db_command_counter = counter
    app.include_router(debug.router, prefix="/v0")
    return app


@pytest.fixture(scope="module")
def store_uri() -> Iterator[str]:
    with durable_store() as uri:
        yield uri


@pytest.fixture
def counter() -> CommandCounter:
    return CommandCounter()


@pytest.fixture
async def http(counter: CommandCounter) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=debug_app(counter))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
async def motor(store_uri: str, counter: CommandCounter) -> AsyncIterator[AsyncIOMotorClient]:
    client: AsyncIOMotorClient = AsyncIOMotorClient(store_uri, event_listeners=[counter])
    try:
        yield client
    finally:
        client.close()


async def test_counts_start_at_zero(http: httpx.AsyncClient) -> None:
    response = await http.get("/v0/debug/db-commands")

    assert response.status_code == 200
    assert response.json() == {"commands": {}, "total": 0}


async def test_counts_real_commands_by_name(
    http: httpx.AsyncClient, motor: AsyncIOMotorClient, counter: CommandCounter
) -> None:
    collection = motor["debugtest"]["things"]
    await collection.insert_many([{"n": i} for i in range(3)])
    await collection.find_one({"n": 1})
    await collection.update_one({"n": 2}, {"$set": {"seen": True}})

    body = (await http.get("/v0/debug/db-commands")).json()

    assert body["commands"]["insert"] == 1  # one bulk insert, not one per document
    assert body["commands"]["find"] == 1
    assert body["commands"]["update"] == 1
    assert body["total"] == sum(body["commands"].values())


async def test_reset_answers_the_cleared_counts_and_starts_again(
    http: httpx.AsyncClient, motor: AsyncIOMotorClient
) -> None:
    collection = motor["debugtest"]["resets"]
    await collection.insert_one({"n": 1})

    cleared = (await http.post("/v0/debug/db-commands/reset")).json()
    after = (await http.get("/v0/debug/db-commands")).json()
    await collection.find_one({})
    later = (await http.get("/v0/debug/db-commands")).json()

    assert cleared["commands"]["insert"] == 1
    assert after == {"commands": {}, "total": 0}
    assert later["commands"] == {"find": 1}
    assert later["total"] == 1


async def test_concurrent_commands_from_motor_threads_are_all_counted(
    motor: AsyncIOMotorClient, counter: CommandCounter
) -> None:
    collection = motor["debugtest"]["concurrent"]

    await asyncio.gather(*(collection.insert_one({"n": i}) for i in range(50)))

    assert counter.snapshot()["insert"] == 50


def test_counter_is_thread_safe(counter: CommandCounter) -> None:
    class Event:  # what `started` reads of a pymongo CommandStartedEvent
        command_name = "find"

    def hammer() -> None:
        for _ in range(20_000):
            counter.started(Event())  # type: ignore[arg-type]

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert counter.snapshot() == {"find": 80_000}


async def test_without_a_counter_the_endpoints_answer_404() -> None:
    transport = httpx.ASGITransport(app=debug_app(None))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        read = await client.get("/v0/debug/db-commands")
        reset = await client.post("/v0/debug/db-commands/reset")

    assert read.status_code == 404
    assert "COUNT_DB_COMMANDS" in read.json()["detail"]
    assert reset.status_code == 404


async def test_installed_counter_sees_clients_created_after_it(store_uri: str) -> None:
    counter = install_command_counter()
    assert install_command_counter() is counter  # registered once: no double counting
    before = counter.snapshot().get("insert", 0)
    client: AsyncIOMotorClient = AsyncIOMotorClient(store_uri)  # no per-client listener
    try:
        await client["debugtest"]["global"].insert_one({"n": 1})
    finally:
        client.close()

    assert counter.snapshot().get("insert", 0) == before + 1
