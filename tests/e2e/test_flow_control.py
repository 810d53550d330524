"""Flow control end to end (issue 18): two runtimes of our SDK, each on its own server replica,
both replicas on one database (nx-27017). The limits are the server's: the runtimes know nothing
of them; what runs is observed inside the nodes.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from exospherehost import BaseNode, Runtime
from tests.support.durable_store import durable_store
from tests.support.live_server import LiveServer, start_server

pytestmark = pytest.mark.e2e

LEASE_SECONDS = 2
SERVER_ENV = {
    "STATE_LEASE_SECONDS": LEASE_SECONDS,
    "RECOVERY_INTERVAL_SECONDS": 0.2,
    "RECOVERY_GRACE_SECONDS": 1,
}


@dataclass
class Observed:
    """What the nodes saw: executions in flight per key, their peak, and each start and end."""

    in_flight: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)
    starts: list[tuple[float, str, str]] = field(default_factory=list)  # (time, key, label)
    ends: list[tuple[float, str, str]] = field(default_factory=list)


SEEN = Observed()


class Hold(BaseNode):
    """Holds its slot for `seconds`, counting how many run at once per `key`."""

    class Inputs(BaseModel):
        key: str
        label: str
        seconds: str

    class Outputs(BaseModel):
        label: str

    async def execute(self) -> Outputs:
        key, label = self.inputs.key, self.inputs.label
        SEEN.in_flight[key] = SEEN.in_flight.get(key, 0) + 1
        SEEN.peak[key] = max(SEEN.peak.get(key, 0), SEEN.in_flight[key])
        SEEN.starts.append((time.monotonic(), key, label))
        try:
            await asyncio.sleep(float(self.inputs.seconds))
        finally:
            SEEN.in_flight[key] -= 1
            SEEN.ends.append((time.monotonic(), key, label))
        return self.Outputs(label=label)


class After(BaseNode):
    """The second node of a run: records when the run's last work ended."""

    class Inputs(BaseModel):
        label: str

    class Outputs(BaseModel):
        label: str

    async def execute(self) -> Outputs:
        SEEN.ends.append((time.monotonic(), "after", self.inputs.label))
        return self.Outputs(label=self.inputs.label)


@dataclass
class Cluster:
    one: LiveServer
    two: LiveServer

    @property
    def headers(self) -> dict[str, str]:
        return self.one.headers


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with durable_store() as uri:
        env = {"MONGO_URI": uri, "MONGO_DATABASE_NAME": f"flow{uuid.uuid4().hex[:8]}", **SERVER_ENV}
        one = start_server(**env)
        try:
            two = start_server(api_key=one.api_key, encryption_key=one.encryption_key, **env)
            try:
                yield Cluster(one, two)
            finally:
                two.stop()
        finally:
            one.stop()


@pytest.fixture(autouse=True)
def fresh_observations() -> None:
    global SEEN
    SEEN = Observed()


def _hold(ns: str, seconds: float, **setting: Any) -> dict[str, Any]:
    node = {
        "node_name": "Hold",
        "namespace": ns,
        "identifier": "hold",
        "inputs": {"key": "${{ store.key }}", "label": "${{ store.label }}", "seconds": str(seconds)},
        **setting,
    }
    return node


async def _upsert(cluster: Cluster, ns: str, nodes: list[dict[str, Any]], **graph: Any) -> None:
    body = {
        "secrets": {},
        "nodes": nodes,
        "store_config": {"required_keys": ["key", "label"]},
        "retry_policy": {"max_retries": 3, "strategy": "FIXED", "backoff_factor": 50},
        **graph,
    }
    async with httpx.AsyncClient(base_url=cluster.one.base_url, headers=cluster.headers) as http:
        answer = await http.put(f"/v0/namespace/{ns}/graph/g", json=body)
        assert answer.status_code == 201, answer.text
        assert answer.json()["validation_status"] == "VALID", answer.text


@asynccontextmanager
async def _two_runtimes(
    cluster: Cluster, ns: str, *nodes: type[BaseNode], workers: int = 4
) -> AsyncIterator[None]:
    """A runtime on each replica, each able to run `workers` nodes at once."""
    kinds = list(nodes or (Hold,))
    async with (
        Runtime(
            ns, "rt-1", kinds, cluster.one.base_url, cluster.one.api_key, workers, workers, poll_interval=0.1
        ),
        Runtime(
            ns, "rt-2", kinds, cluster.two.base_url, cluster.two.api_key, workers, workers, poll_interval=0.1
        ),
    ):
        yield


async def _trigger(cluster: Cluster, ns: str, key: str, label: str, **extra: Any) -> str:
    body = {"store": {"key": key, "label": label}, **extra}
    async with httpx.AsyncClient(base_url=cluster.two.base_url, headers=cluster.headers) as http:
        answer = await http.post(f"/v0/namespace/{ns}/graph/g/trigger", json=body)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["run_id"])


async def _run(cluster: Cluster, ns: str, run_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=cluster.one.base_url, headers=cluster.headers) as http:
        run: dict[str, Any] = (await http.get(f"/v0/namespace/{ns}/run/{run_id}")).json()
        return run


async def _all_end(cluster: Cluster, ns: str, run_ids: list[str], timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    for run_id in run_ids:
        while (status := (await _run(cluster, ns, run_id))["status"]) in ("PENDING", "RUNNING"):
            assert time.monotonic() < deadline, f"run {run_id} is still {status}"
            await asyncio.sleep(0.1)
        assert status == "SUCCESS", f"run {run_id} ended {status}"


def _overlapped(one: str, other: str) -> bool:
    """Whether an execution of key `one` ran while one of key `other` did."""
    spans = {
        (key, label): (at, next(end for end, k, lab in SEEN.ends if (k, lab) == (key, label)))
        for at, key, label in SEEN.starts
    }
    firsts = [span for (key, _), span in spans.items() if key == one]
    seconds = [span for (key, _), span in spans.items() if key == other]
    return any(a[0] < b[1] and b[0] < a[1] for a in firsts for b in seconds)


def _ns() -> str:
    return f"flow-{uuid.uuid4().hex[:8]}"


async def test_a_limit_per_key_holds_across_runtimes_and_replicas_and_uses_every_slot(
    cluster: Cluster,
) -> None:
    ns = _ns()
    async with _two_runtimes(cluster, ns):
        await _upsert(cluster, ns, [_hold(ns, 0.3, concurrency={"limit": 2, "key": "${{ store.key }}"})])
        runs = [await _trigger(cluster, ns, key, f"{key}-{i}") for i in range(6) for key in ("acme", "zeta")]
        await _all_end(cluster, ns, runs)

    assert SEEN.peak == {"acme": 2, "zeta": 2}  # never over the limit, and both slots of each key used
    assert _overlapped("acme", "zeta")  # a full key held nothing of the other back


async def test_a_rate_limit_spreads_the_claims_over_time(cluster: Cluster) -> None:
    ns = _ns()
    async with _two_runtimes(cluster, ns):
        await _upsert(cluster, ns, [_hold(ns, 0.01, rate_limit={"per_second": 4})])
        runs = [await _trigger(cluster, ns, "all", f"r{i}") for i in range(8)]
        await _all_end(cluster, ns, runs)

    starts = sorted(at for at, _, _ in SEEN.starts)
    assert starts[-1] - starts[0] >= 7 / 4 * 0.8  # eight claims at four a second: 1.75 s
    for at in starts:
        assert sum(1 for other in starts if at <= other < at + 1) <= 4 + 1  # about 4 in any second


async def test_a_later_run_with_a_higher_priority_starts_before_those_already_due(cluster: Cluster) -> None:
    ns = _ns()
    await _register(cluster, ns)
    await _upsert(cluster, ns, [_hold(ns, 0.2, concurrency={"limit": 1})])
    low = [await _trigger(cluster, ns, "all", f"low-{i}") for i in range(4)]
    urgent = await _trigger(cluster, ns, "all", "urgent", priority=600)
    async with _two_runtimes(cluster, ns):
        await _all_end(cluster, ns, [*low, urgent])

    order = [label for _, _, label in sorted(SEEN.starts)]
    assert order == ["urgent", "low-0", "low-1", "low-2", "low-3"]


async def test_run_concurrency_keeps_runs_pending_and_starts_them_in_order(cluster: Cluster) -> None:
    ns = _ns()
    after = {
        "node_name": "After",
        "namespace": ns,
        "identifier": "after",
        "inputs": {"label": "${{ hold.outputs.label }}"},
    }
    hold = {**_hold(ns, 0.2), "next_nodes": ["after"]}
    async with _two_runtimes(cluster, ns, Hold, After):
        await _upsert(cluster, ns, [hold, after], concurrency={"limit": 1})
        runs = [await _trigger(cluster, ns, "all", f"run-{i}") for i in range(4)]
        await asyncio.sleep(0.1)
        pending = [(await _run(cluster, ns, run_id))["status"] for run_id in runs[1:]]
        await _all_end(cluster, ns, runs)

    assert pending == ["PENDING"] * 3
    began = {label: at for at, _, label in SEEN.starts}
    finished = {label: at for at, key, label in SEEN.ends if key == "after"}
    order = sorted(began, key=began.__getitem__)
    assert order == [f"run-{i}" for i in range(4)]  # first come, first served
    for earlier, later in itertools.pairwise(order):
        assert began[later] >= finished[earlier]  # one run at a time: the next starts when one ends


# A runtime whose node hangs once claimed; killed with SIGKILL while it holds the only slot.
DOOMED = textwrap.dedent(
    """
    import asyncio, sys
    from pydantic import BaseModel
    from exospherehost import BaseNode, Runtime

    class Hold(BaseNode):
        class Inputs(BaseModel):
            key: str
            label: str
            seconds: str
        class Outputs(BaseModel):
            label: str
        async def execute(self):
            print("claimed", flush=True)
            await asyncio.sleep(3600)

    Runtime(sys.argv[1], "doomed", [Hold], sys.argv[2], sys.argv[3], heartbeat_interval=30).start()
    """
)


async def test_a_holder_killed_with_sigkill_frees_its_slot_when_its_lease_ends(cluster: Cluster) -> None:
    ns = _ns()
    await _register(cluster, ns)
    await _upsert(cluster, ns, [_hold(ns, 0.05, concurrency={"limit": 1})])
    doomed = subprocess.Popen(
        [sys.executable, "-c", DOOMED, ns, cluster.one.base_url, cluster.one.api_key],
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = await _trigger(cluster, ns, "all", "first")
        assert doomed.stdout is not None
        assert await asyncio.to_thread(doomed.stdout.readline) == "claimed\n"
        claimed_at = time.monotonic()
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        if doomed.stdout is not None:
            doomed.stdout.close()
    second = await _trigger(cluster, ns, "all", "second")
    async with _two_runtimes(cluster, ns):
        await _all_end(cluster, ns, [second, first])

    began = {label: at for at, _, label in SEEN.starts}
    assert began["second"] - claimed_at >= LEASE_SECONDS - 0.3  # the slot was held until the lease ended
    assert began["second"] - claimed_at < LEASE_SECONDS + 15  # and freed then (not at some later sweep)
    assert SEEN.peak == {"all": 1}


async def _register(cluster: Cluster, ns: str) -> None:
    """Register the nodes (as a runtime does when it starts), so that graphs validate."""
    async with Runtime(ns, "registrar", [Hold, After], cluster.one.base_url, cluster.one.api_key):
        pass
