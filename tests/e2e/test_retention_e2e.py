"""Retention on a real server (RUN_RETENTION=2s, RETENTION_INTERVAL=0.5s) while runs keep flowing:
our SDK's runtime executes a two-node graph as the test triggers a run every ~100 ms, and the
runs that ended more than 2 s ago disappear, with their states, while newer ones and an open one
stay; none fails."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from exospherehost import GraphNodeModel, Runtime, StateManager
from tests.e2e.nodes import Upper
from tests.support.live_server import LiveServer, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

RETENTION_MS = 2000
INTERVAL_MS = 500
FLOW_SECONDS = 5.0
# A run that ended longer ago than this when the test looks must be gone: the retention, a pass
# interval, and room for a pass and a loaded machine.
GONE_AFTER_MS = RETENTION_MS + INTERVAL_MS + 1500


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    live = start_server(RUN_RETENTION="2s", RETENTION_INTERVAL="0.5s")
    try:
        yield live
    finally:
        live.stop()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Watch:
    """What the test sees of the namespace's runs, polled from `GET /runs`: when each run ended
    (server time, epoch ms), its status, and when it was first missing (test time, same clock)."""

    def __init__(self, http: httpx.AsyncClient, ns: str) -> None:
        self.http, self.ns = http, ns
        self.triggered: list[str] = []
        self.finished: dict[str, int] = {}
        self.statuses: dict[str, str] = {}
        self.gone_at: dict[str, int] = {}

    async def poll(self) -> None:
        asked = _now_ms()
        answer = await self.http.get(f"/v0/namespace/{self.ns}/runs", params={"limit": 500})
        assert answer.status_code == 200, answer.text
        listed = {run["run_id"]: run for run in answer.json()["runs"]}
        for run_id in self.triggered:
            run = listed.get(run_id)
            if run is None:
                self.gone_at.setdefault(run_id, asked)
                continue
            assert run_id not in self.gone_at, f"run {run_id} came back after it was gone"
            self.statuses[run_id] = run["status"]
            if run["finished_ms"] is not None:
                self.finished[run_id] = run["finished_ms"]


async def test_runs_that_ended_longer_ago_than_the_retention_disappear_as_runs_keep_flowing(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXOSPHERE_STATE_MANAGER_URI", server.base_url)
    monkeypatch.setenv("EXOSPHERE_API_KEY", server.api_key)
    ns = f"retention-{uuid.uuid4().hex[:8]}"
    graph = [
        GraphNodeModel(
            node_name="Upper", namespace=ns, identifier="a", inputs={"text": "hi"}, next_nodes=["b"]
        ),
        GraphNodeModel(
            node_name="Upper", namespace=ns, identifier="b", inputs={"text": "${{ a.outputs.text }}!"}
        ),
    ]
    async with (
        httpx.AsyncClient(base_url=server.base_url, headers=server.headers) as http,
        StateManager(ns) as client,
        Runtime(ns, "worker", [Upper], workers=4),
    ):
        await client.upsert_graph("shout", graph, secrets={})
        waiting = (await client.trigger("shout", start_delay=600_000))["run_id"]  # open all along
        watch = Watch(http, ns)
        flowing_until = time.monotonic() + FLOW_SECONDS
        while time.monotonic() < flowing_until:
            watch.triggered.append((await client.trigger("shout"))["run_id"])
            await watch.poll()
            await asyncio.sleep(0.1)
        for _ in range(10):  # the last runs end; the passes go on
            await watch.poll()
            await asyncio.sleep(0.1)
        looked_at = _now_ms()
        present = {}
        for run_id in watch.triggered:
            asked = _now_ms()
            present[run_id] = (await http.get(f"/v0/namespace/{ns}/run/{run_id}")).status_code
            if present[run_id] == 404:  # maybe deleted since the last poll
                watch.gone_at.setdefault(run_id, asked)
        gone_states = [
            (await http.get(f"/v0/namespace/{ns}/states/run/{run_id}")).json()["count"]
            for run_id in watch.gone_at
        ]
        open_run = (await http.get(f"/v0/namespace/{ns}/run/{waiting}")).json()

    assert set(watch.statuses.values()) == {"SUCCESS"} and set(watch.finished) == set(watch.triggered), (
        "every run ends SUCCESS and is seen ended before it goes"
    )
    gone = {run_id for run_id, code in present.items() if code == 404}
    assert gone == set(watch.gone_at), "a run missing from the listing answers 404"
    assert set(present.values()) <= {200, 404}
    assert gone_states == [0] * len(gone), "a deleted run's states went with it"
    for run_id in gone:
        assert watch.gone_at[run_id] - watch.finished[run_id] >= RETENTION_MS, "deleted before RUN_RETENTION"
    long_ended = {r for r, ended in watch.finished.items() if looked_at - ended > GONE_AFTER_MS}
    recently_ended = {r for r, ended in watch.finished.items() if looked_at - ended < RETENTION_MS - 100}
    assert len(long_ended) >= 5 and len(recently_ended) >= 3, (len(long_ended), len(recently_ended))
    assert long_ended <= gone, f"{len(long_ended - gone)} runs ended long ago are still there"
    assert not recently_ended & gone, "runs that ended within RUN_RETENTION were deleted"
    assert open_run["status"] == "PENDING" and open_run["finished_ms"] is None
    assert '"event": "runs_purged"' in server.log_text()
