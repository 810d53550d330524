"""Against a store that outlives the server (a MongoDB wire-protocol server on SQLite, nx-27017):
a server killed mid-run loses no work, and two replicas share one database without duplicates.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from exospherehost import GraphNodeModel, Runtime, StateManager, UnitesModel
from tests.e2e.conftest import by_identifier, wait_run
from tests.e2e.nodes import SLOW_STARTS, Slow, Split, Upper
from tests.support.durable_store import durable_store
from tests.support.live_server import LiveServer, start_server

pytestmark = pytest.mark.e2e

FAST_RECOVERY = {"RECOVERY_INTERVAL_SECONDS": 0.2, "RECOVERY_GRACE_SECONDS": 1}


@pytest.fixture(scope="module")
def mongo_uri() -> Iterator[str]:
    with durable_store() as uri:
        yield uri


def _env(mongo_uri: str) -> dict[str, object]:
    return {"MONGO_URI": mongo_uri, "MONGO_DATABASE_NAME": f"db{uuid.uuid4().hex[:8]}", **FAST_RECOVERY}


async def _wait_until(check: Callable[[], bool], limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_server_killed_mid_run_loses_no_work(mongo_uri: str) -> None:
    env = _env(mongo_uri)
    first = start_server(**env)
    second: LiveServer | None = None
    ns = "restart"
    graph = [
        GraphNodeModel(
            node_name="Slow", namespace=ns, identifier="slow", inputs={"seconds": "1.5"}, next_nodes=["up"]
        ),
        GraphNodeModel(
            node_name="Upper", namespace=ns, identifier="up", inputs={"text": "${{ slow.outputs.slept }}s"}
        ),
    ]
    args = {"state_manager_uri": first.base_url, "key": first.api_key}
    try:
        async with Runtime(ns, "rt", [Slow, Upper], **args), StateManager(ns, **args) as client:
            await client.upsert_graph("restart", graph, secrets={})
            run = await client.trigger("restart")
            # Wait for the node itself: a QUEUED status alone may be a claim whose answer is lost.
            await _wait_until(lambda: "1.5" in SLOW_STARTS)
            first.process.kill()  # SIGKILL: no shutdown, no cleanup
            first.stop()
            second = start_server(
                port=first.port, api_key=first.api_key, encryption_key=first.encryption_key, **env
            )
            # The runtime's report of the slow node fails while the server is down and is retried.
            states = await wait_run(client, run["run_id"], min_states=2, timeout=30)
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert [(s["identifier"], s["status"]) for s in states] == [("slow", "SUCCESS"), ("up", "SUCCESS")]
    assert states[1]["outputs"] == {"text": "1.5S"}


async def test_two_replicas_share_one_database_without_duplicates(mongo_uri: str) -> None:
    env = _env(mongo_uri)
    one = start_server(**env)
    two = start_server(api_key=one.api_key, encryption_key=one.encryption_key, **env)
    ns = "replicas"
    graph = [
        GraphNodeModel(
            node_name="Upper", namespace=ns, identifier="r", inputs={"text": "go"}, next_nodes=["s"]
        ),
        GraphNodeModel(
            node_name="Split", namespace=ns, identifier="s", inputs={"count": "4"}, next_nodes=["u"]
        ),
        GraphNodeModel(
            node_name="Upper", namespace=ns, identifier="u", inputs={"text": "${{ s.outputs.item }}"}
        ),
        GraphNodeModel(
            node_name="Upper",
            namespace=ns,
            identifier="j",
            inputs={"text": "${{ r.outputs.text }}!"},
            unites=UnitesModel(identifier="r"),
        ),
    ]
    on_one = {"state_manager_uri": one.base_url, "key": one.api_key}
    on_two = {"state_manager_uri": two.base_url, "key": two.api_key}
    try:
        async with (
            Runtime(ns, "rt-1", [Upper, Split], **on_one),
            Runtime(ns, "rt-2", [Upper, Split], **on_two),
            StateManager(ns, **on_one) as client_one,
            StateManager(ns, **on_two) as client_two,
        ):
            await client_one.upsert_graph("shared", graph, secrets={})
            runs = await asyncio.gather(*(c.trigger("shared") for c in [client_one, client_two] * 3))
            results = [await wait_run(client_two, r["run_id"], min_states=10, timeout=40) for r in runs]
    finally:
        one.stop()
        two.stop()
    for states in results:
        assert len(states) == 10  # r, 4 s, 4 u, j: nothing duplicated by the two replicas
        assert all(s["status"] == "SUCCESS" for s in states)
        assert [s["outputs"] for s in by_identifier(states, "j")] == [{"text": "GO!"}]
