"""Each hot operation costs the same however many other states the store holds (DESIGN §5).

Measured on the embedded engine (nx-27017, a real wire-protocol store: a scan shows there as a
15-60x slowdown, while an index lookup stays flat): the same operation with 1,000 and with
50,000 other states stored, the minimum of several repeats each, in one process. The target is
1.5x; measured on 2026-12-07: 0.97x-1.22x for every operation (a fan-in's arrival, counted on
its anchor: 1.09x; the arrival that makes the join: 1.08x) but the run page (one aggregation on
the (run_id, status) index, which the engine runs ~2x slower at 50,000: 1.25x-1.55x), so the
assertion allows 2x, which a loaded machine stays under and a scan (15x and more) does not.

The other states belong to other runs and namespaces and are in every status, as in a store that
has been in use for a while.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pymongo
import pytest

from state_manager.app import create_app
from state_manager.domain.gates import NEVER, gate_id, park_key
from state_manager.domain.queues import ready_key
from tests.factories import NAMESPACE, Api, graph, node, template
from tests.support.durable_store import durable_store
from tests.support.in_process import settings_for, started

SMALL, LARGE = 1_000, 50_000
REPEATS = 7
ALLOWED = 2.0
STATUSES = ["SUCCESS", "SUCCESS", "SUCCESS", "ERRORED", "CREATED", "QUEUED", "CANCELLED"]

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def store_uri() -> Iterator[str]:
    with durable_store() as uri:
        yield uri


def _ready(n: int, status: str) -> str | None:
    return ready_key(f"otherns{n % 3}", f"Other{n % 5}", n) if status == "CREATED" else None


def _gate(n: int) -> str:
    return gate_id("concurrency", f"otherns{n % 3}", "other", f"o{n % 7}", f"tenant{n}")


def _parked(n: int, status: str) -> str | None:
    return park_key(_gate(n // 50), _ready(n, status)) if status == "CREATED" else None


@dataclass
class Store:
    api: Api
    db: Any
    filled: int = 0

    def fill_to(self, total: int) -> None:
        """Add other states (other runs, other namespaces, every status) until `total`."""
        batch = []
        for n in range(self.filled, total):
            run = f"other-{n // 10}"
            status = STATUSES[n % len(STATUSES)]
            batch.append(
                {
                    "node_name": f"Other{n % 5}",
                    "namespace_name": f"otherns{n % 3}",
                    "identifier": f"o{n % 7}",
                    "graph_name": "other",
                    "graph_namespace": f"otherns{n % 3}",
                    "run_id": run,
                    "status": status,
                    "inputs": {"x": str(n)},
                    "outputs": {"y": str(n)} if status == "SUCCESS" else {},
                    "parents": {"o0": f"{n:024x}"},
                    "spawn_key": f"fill:{n}",
                    "pending_effect": None,
                    "enqueue_after": 0,
                    "updated_ms": 0,
                    "owed_group": "",
                    "owed_index": 0,
                    # Waiting states of other nodes are in the claims' index too, and every
                    # other one is parked at a gate of its namespace (flow control).
                    "ready": _ready(n, status) if n % 2 else None,
                    "parked": None if n % 2 else _parked(n, status),
                }
            )
            if len(batch) == 5_000:
                self.db.State.insert_many(batch)
                batch = []
        if batch:
            self.db.State.insert_many(batch)
        runs = [
            {
                "run_id": f"other-{n}",
                "namespace_name": f"otherns{n % 3}",
                "graph_name": "other",
                "status": "SUCCESS",
                "sort_key": f"{n:013d}:other-{n}",
                "created": 10,
                "open": 0,
                "settled": {"SUCCESS": 10},
                "final": {"status": "SUCCESS"},
            }
            for n in range(self.filled // 10, total // 10)
        ]
        if runs:
            self.db.runs.insert_many(runs)
        gates = [
            {
                "_id": _gate(n),
                "kind": "concurrency",
                "namespace": f"otherns{n % 3}",
                "graph": "other",
                "node": f"o{n % 7}",
                "key": f"tenant{n}",
                "held": 1,
                "holders": {},
                "wake_ms": NEVER,
            }
            for n in range(self.filled // 50, total // 50)
        ]
        if gates:
            self.db.FlowGate.insert_many(gates)
        self.filled = total


@pytest.fixture
async def store(store_uri: str) -> AsyncIterator[Store]:
    database = f"db{uuid.uuid4().hex[:8]}"
    app = create_app(settings_for(mongo_uri=store_uri, mongo_database_name=database))
    with pymongo.MongoClient(store_uri) as mongo:
        async with started(app) as http:
            api = Api(http, NAMESPACE)
            # The fan-in has nodes of its own (Root, Spread, Leaf): its claims take its states.
            await api.register(
                node("Alpha"),
                node("Beta"),
                node("Split", outputs=["n"]),
                node("Sum", ["v"]),
                node("Root"),
                node("Spread", outputs=["n"]),
                node("Leaf"),
                node("Gamma"),
                node("Delta"),
            )
            tenants = {"default_values": {"tenant": "acme"}}
            wide = {"limit": 1000, "key": "${{ store.tenant }}"}  # never binds here
            await api.upsert(
                "limited",
                graph({**template("g", "Gamma", {"x": "go"}), "concurrency": wide}, store_config=tenants),
            )
            tight = {"limit": 1, "key": "${{ store.tenant }}"}
            await api.upsert(
                "tight",
                graph({**template("d", "Delta", {"x": "go"}), "concurrency": tight}, store_config=tenants),
            )
            await api.upsert(
                "chain",
                graph(
                    template("a", "Alpha", {"x": "go"}, ["b"]),
                    template("b", "Beta", {"x": "${{ a.outputs.y }}"}),
                ),
            )
            await api.upsert(
                "fan",
                graph(
                    template("s", "Split", {"x": "go"}, ["b"]),
                    template("b", "Beta", {"x": "${{ s.outputs.n }}"}),
                    template("j", "Sum", {"v": "${{ b.outputs.y[*] }}"}, unites="s"),
                ),
            )
            await api.upsert(
                "fanin",
                graph(
                    template("a", "Root", {"x": "go"}, ["s"]),
                    template("s", "Spread", {"x": "${{ a.outputs.y }}"}, ["b"]),
                    template("b", "Leaf", {"x": "${{ s.outputs.n }}"}),
                    template("j", "Sum", {"v": "${{ b.outputs.y[*] }}"}, unites="a"),
                ),
            )
            yield Store(api, mongo[database])


Timed = Callable[[], Awaitable[Callable[[], Awaitable[Any]]]]


async def _best(prepare: Timed) -> float:
    """The minimum over the repeats of the operation's time; `prepare` sets up one repeat (not
    timed) and returns the operation."""
    times = []
    for _ in range(REPEATS):
        operation = await prepare()
        started = time.perf_counter()
        await operation()
        times.append(time.perf_counter() - started)
    return min(times)


async def _chain_run(api: Api) -> str:
    return str((await api.trigger("chain"))["run_id"])


def _claimed(states: list[Any]) -> Any:
    assert states, "nothing was claimed"
    return states[0]


async def _fan_in_branches(api: Api) -> tuple[Any, Any]:
    """Two branches below the anchor of a fan-in, claimed (a -> s fans out -> b; j unites a)."""
    await api.trigger("fanin")
    await api.executed(_claimed(await api.claim("Root"))["state_id"], [{"y": "go"}])
    await api.executed(_claimed(await api.claim("Spread"))["state_id"], [{"n": "1"}, {"n": "2"}])
    first, last = await api.claim("Leaf", batch_size=2)
    return first, last


async def _a_fan_ins_arrival(api: Api) -> Callable[[], Awaitable[Any]]:
    first, _ = await _fan_in_branches(api)
    return lambda: api.executed(first["state_id"], [{"y": "1"}])


async def _the_arrival_that_makes_a_join(api: Api) -> Callable[[], Awaitable[Any]]:
    first, last = await _fan_in_branches(api)
    await api.executed(first["state_id"], [{"y": "1"}])
    return lambda: api.executed(last["state_id"], [{"y": "2"}])


def _flow_control_operations(api: Api) -> list[tuple[str, Timed]]:
    """Claims and reports of nodes with a concurrency limit (issue 18): one that never binds, and
    one that holds states back (parked) and lets them in as slots free."""
    unreported: list[Any] = []

    async def claim_a_batch_past_a_limit() -> Callable[[], Awaitable[Any]]:
        for state in unreported:  # the last repeat's, their slots given back (not timed)
            await api.executed(state["state_id"], [{"y": "1"}])
        unreported.clear()
        for _ in range(16):
            await api.trigger("limited")

        async def claim() -> Any:
            claimed = await api.claim("Gamma", batch_size=16)
            assert len(claimed) == 16
            unreported.extend(claimed)

        return claim

    async def a_report_that_gives_a_slot_back() -> Callable[[], Awaitable[Any]]:
        await api.trigger("limited")
        state = _claimed(await api.claim("Gamma"))
        return lambda: api.executed(state["state_id"], [{"y": "1"}])

    holder: list[Any] = []

    async def a_claim_a_full_limit_holds_back() -> Callable[[], Awaitable[Any]]:
        if not holder:
            await api.trigger("tight")
            holder.append(_claimed(await api.claim("Delta")))
        for _ in range(16):
            await api.trigger("tight")

        async def claim() -> Any:
            assert await api.claim("Delta", batch_size=16) == []  # all sixteen parked

        return claim

    async def a_slot_given_back_to_a_parked_state() -> Callable[[], Awaitable[Any]]:
        if not holder:
            await (await a_claim_a_full_limit_holds_back())()
        held = holder.pop()

        async def give_back() -> Any:
            await api.executed(held["state_id"], [{"y": "1"}])
            holder.append(_claimed(await api.claim("Delta")))  # the first parked, let back in

        return give_back

    return [
        ("claim a batch of 16 past a limit that does not bind", claim_a_batch_past_a_limit),
        ("a report that gives a slot back", a_report_that_gives_a_slot_back),
        ("a claim a full limit holds back (16 parked)", a_claim_a_full_limit_holds_back),
        ("a slot given back and claimed by a parked state", a_slot_given_back_to_a_parked_state),
    ]


async def test_the_hot_operations_cost_the_same_however_large_the_store(store: Store) -> None:
    api = store.api

    async def claim_a_batch() -> Callable[[], Awaitable[Any]]:
        for _ in range(16):
            await _chain_run(api)

        async def claim() -> Any:
            assert len(await api.claim("Alpha", batch_size=16)) == 16

        return claim

    async def report_with_a_child() -> Callable[[], Awaitable[Any]]:
        await _chain_run(api)
        state = _claimed(await api.claim("Alpha"))
        return lambda: api.executed(state["state_id"], [{"y": "1"}])

    async def report_that_ends_the_run() -> Callable[[], Awaitable[Any]]:
        await _chain_run(api)
        await api.executed(_claimed(await api.claim("Alpha"))["state_id"], [{"y": "1"}])
        state = _claimed(await api.claim("Beta"))
        return lambda: api.executed(state["state_id"], [{"y": "2"}])

    async def a_joins_arrival() -> Callable[[], Awaitable[Any]]:
        await api.trigger("fan")
        await api.executed(_claimed(await api.claim("Split"))["state_id"], [{"n": "1"}, {"n": "2"}])
        first, _ = await api.claim("Beta", batch_size=2)
        return lambda: api.executed(first["state_id"], [{"y": "1"}])

    async def a_repeated_report() -> Callable[[], Awaitable[Any]]:
        # A client's retry of a report that was stored: every conditional write it repeats
        # matches nothing, which must not scan.
        await _chain_run(api)
        await api.executed(_claimed(await api.claim("Alpha"))["state_id"], [{"y": "1"}])
        state = _claimed(await api.claim("Beta"))
        await api.executed(state["state_id"], [{"y": "2"}])
        return lambda: api.executed(state["state_id"], [{"y": "2"}])

    run_id = await _chain_run(api)

    async def runs_page() -> Callable[[], Awaitable[Any]]:
        return lambda: api.call("GET", "/runs?limit=50")

    async def run_page() -> Callable[[], Awaitable[Any]]:
        return lambda: api.call("GET", f"/run/{run_id}")

    operations = [
        ("claim a batch of 16", claim_a_batch),
        ("report with a child", report_with_a_child),
        ("the report that ends a run", report_that_ends_the_run),
        ("a join's arrival", a_joins_arrival),
        ("a fan-in's arrival", lambda: _a_fan_ins_arrival(api)),
        ("the arrival that makes a join", lambda: _the_arrival_that_makes_a_join(api)),
        ("a repeated report", a_repeated_report),
        *_flow_control_operations(api),
        ("a runs-list page", runs_page),
        ("a run page", run_page),
    ]
    store.fill_to(SMALL)
    small = {name: await _best(prepare) for name, prepare in operations}
    started = time.perf_counter()
    store.fill_to(LARGE)
    print(f"\nfilled to {LARGE} in {time.perf_counter() - started:.1f} s")
    large = {name: await _best(prepare) for name, prepare in operations}
    grown = []
    for name, _ in operations:
        ratio = large[name] / small[name]
        print(f"{name}: {small[name] * 1000:.2f} ms -> {large[name] * 1000:.2f} ms ({ratio:.2f}x)")
        if ratio > ALLOWED:
            grown.append(f"{name}: {small[name] * 1000:.2f} ms -> {large[name] * 1000:.2f} ms ({ratio:.1f}x)")
    assert not grown, f"these grow with the store: {grown}"
