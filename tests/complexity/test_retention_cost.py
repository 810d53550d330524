"""Retention costs the same however many other runs the store holds (DESIGN §5).

On the embedded engine (nx-27017), the same operations with 1,000 and with 10,000 other runs
stored (each with three states and some with an idempotency record: runs that ended recently,
runs still going), the minimum of several repeats each, in one process:

- the query that finds the runs that ended before the cutoff (a range on the single-field
  `finished_ms` index, sorted by it, with a limit), with 100 old runs to find;
- the same query while 1,000 and then 5,000 old runs wait to be deleted (the limit bounds it);
- a whole pass that deletes 20 old runs with their states and idempotency records.

A scan shows there as a 15-60x slowdown; an index lookup stays flat. The assertion allows 2x for
the query, and 3x for a whole pass, whose per-run aggregation of a run's states on the
(run_id, status) index the engine runs ~2x slower in a larger store (the run page does the same:
see test_hot_shapes.py). Measured on 2026-12-07 (sizes cut from 20,000 to keep the suite short):
the query 0.84x-1.36x (about 6 ms), the first page with 5x the old runs waiting 1.00x, a pass of
20 runs 1.11x; without the `finished` index the query was 2.46x at these sizes (3.4x at 20,000:
it grows with the store).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pymongo
import pytest

from state_manager.app import create_app
from state_manager.clock import now_ms
from state_manager.domain.retention import Walk, cutoff_ms
from state_manager.services.context import AppContext
from state_manager.services.retention import old_runs, purge_once
from tests.support.durable_store import durable_store
from tests.support.in_process import settings_for, started

SMALL, LARGE = 1_000, 10_000
BACKLOG = 5_000  # old runs waiting, in the second test
REPEATS = 5
QUERY_ALLOWED, PASS_ALLOWED = 2.0, 3.0
RETENTION_SECONDS = 3600
HOUR = 3_600_000
PASS_RUNS = 20

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def store_uri() -> Iterator[str]:
    with durable_store() as uri:
        yield uri


def _run(run_id: str, *, ended: int | None, namespace: str = "otherns") -> dict[str, Any]:
    """A run document as the server writes it: ended at `ended` (epoch ms), or still going."""
    created = (ended or now_ms()) - 60_000
    sort_key = f"{created:013d}:{run_id}"
    return {
        "run_id": run_id,
        "namespace_name": namespace,
        "graph_name": "other",
        "graph_version": 1,
        "status": "SUCCESS" if ended is not None else "RUNNING",
        "finished_ms": ended,
        "final": {"success_count": 3} if ended is not None else None,
        "counts": {"SUCCESS": 3} if ended is not None else {},
        "created": 3,
        "open": 0 if ended is not None else 1,
        "settled": {"SUCCESS": 3 if ended is not None else 2},
        "owed": {},
        "seeded": True,
        "fork_of": None,
        "created_ms": created,
        "sort_key": sort_key,
        "listing_key": f"{namespace}\x1f{sort_key}",
    }


def _states(run_id: str, namespace: str = "otherns") -> list[dict[str, Any]]:
    return [
        {
            "node_name": f"Other{n}",
            "namespace_name": namespace,
            "identifier": f"o{n}",
            "graph_name": "other",
            "graph_namespace": namespace,
            "run_id": run_id,
            "status": "SUCCESS",
            "inputs": {"x": run_id},
            "outputs": {"y": run_id},
            "spawn_key": f"{run_id}:{n}",
            "pending_effect": None,
            "enqueue_after": 0,
            "updated_ms": 0,
        }
        for n in range(3)
    ]


def _key(run_id: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "namespace": "otherns",
        "graph_name": "other",
        "key": run_id,
        "body_hash": "h",
        "run_id": run_id,
        "created_at": now,
        "expires_at": now + timedelta(days=1),
    }


@dataclass
class Store:
    ctx: AppContext
    db: Any
    filled: int = 0
    old_filled: int = 0

    def _insert(self, runs: list[dict[str, Any]]) -> None:
        for start in range(0, len(runs), 2_000):
            chunk = runs[start : start + 2_000]
            self.db.runs.insert_many(chunk)
            self.db.State.insert_many([s for run in chunk for s in _states(run["run_id"])])
            keys = [_key(run["run_id"]) for run in chunk[::5]]
            if keys:
                self.db.IdempotencyKey.insert_many(keys)

    def fill_to(self, total: int) -> None:
        """Other runs until `total`: half ended ten minutes ago (kept), half still going."""
        recent = now_ms() - 600_000
        runs = [_run(f"other-{n}", ended=recent + n if n % 2 else None) for n in range(self.filled, total)]
        self._insert(runs)
        self.filled = total

    def old_backlog_to(self, total: int) -> None:
        """Old runs waiting to be deleted until `total` (ended two to three hours ago)."""
        start = now_ms() - 3 * HOUR
        self._insert([_run(f"backlog-{n}", ended=start + n) for n in range(self.old_filled, total)])
        self.old_filled = total

    def remove_backlog(self) -> None:
        ids = [f"backlog-{n}" for n in range(self.old_filled)]
        self.db.runs.delete_many({"run_id": {"$in": ids}})
        self.old_filled = 0

    def old_runs(self, count: int) -> list[str]:
        """`count` runs that ended long ago (inserted last, as the wanted ones are in a store)."""
        ended = now_ms() - 5 * HOUR
        ids = [f"old-{uuid.uuid4().hex}" for _ in range(count)]
        self._insert([_run(run_id, ended=ended + i) for i, run_id in enumerate(ids)])
        return ids


@pytest.fixture
async def store(store_uri: str) -> AsyncIterator[Store]:
    database = f"db{uuid.uuid4().hex[:8]}"
    settings = settings_for(
        mongo_uri=store_uri, mongo_database_name=database, run_retention=RETENTION_SECONDS
    )
    app = create_app(settings)
    with pymongo.MongoClient(store_uri) as mongo:
        async with started(app):
            yield Store(app.state.context, mongo[database])


Operation = Callable[[], Awaitable[Any]]


async def _best(prepare: Callable[[], Operation], check: Callable[[], None] = lambda: None) -> float:
    """The minimum over the repeats of the operation's time; `prepare` sets up one repeat and
    `check` looks at what it did (neither is timed)."""
    times = []
    for _ in range(REPEATS):
        operation = prepare()
        started = time.perf_counter()
        await operation()
        times.append(time.perf_counter() - started)
        check()
    return min(times)


def _find_old_runs() -> Operation:
    async def find() -> None:
        found = await old_runs(Walk().query(cutoff_ms(now_ms(), RETENTION_SECONDS)), 100)
        assert len(found) == 100

    return find


async def _a_pass(store: Store) -> float:
    """The time of a pass that deletes PASS_RUNS old runs (with 3 states each, and an idempotency
    record for every fifth), checked to have deleted them all."""
    wanted: list[str] = []

    def prepare() -> Operation:
        wanted[:] = store.old_runs(PASS_RUNS)

        async def purge() -> None:
            report = await purge_once(store.ctx, pause=0)
            assert report is not None
            assert (report.runs, report.states, report.idempotency_keys) == (PASS_RUNS, 3 * PASS_RUNS, 4)

        return purge

    def check() -> None:
        assert store.db.runs.count_documents({"run_id": {"$in": wanted}}) == 0
        assert store.db.State.count_documents({"run_id": {"$in": wanted}}) == 0
        assert store.db.IdempotencyKey.count_documents({"run_id": {"$in": wanted}}) == 0

    return await _best(prepare, check)


def _ratio(name: str, small: float, large: float) -> float:
    ratio = large / small
    print(f"{name}: {small * 1000:.2f} ms -> {large * 1000:.2f} ms ({ratio:.2f}x)")
    return ratio


async def test_finding_and_deleting_old_runs_costs_the_same_however_many_runs_are_stored(
    store: Store,
) -> None:
    store.fill_to(SMALL)
    store.old_runs(100)
    small_find = await _best(lambda: _find_old_runs())
    store.db.runs.delete_many({"run_id": {"$regex": "^old-"}})
    small_pass = await _a_pass(store)
    started = time.perf_counter()
    store.fill_to(LARGE)
    print(f"\nfilled to {LARGE} other runs in {time.perf_counter() - started:.1f} s")
    store.old_runs(100)
    large_find = await _best(lambda: _find_old_runs())
    store.db.runs.delete_many({"run_id": {"$regex": "^old-"}})
    large_pass = await _a_pass(store)

    find = _ratio("find 100 old runs among the other runs", small_find, large_find)
    purge = _ratio(f"a pass that deletes {PASS_RUNS} runs", small_pass, large_pass)
    assert find <= QUERY_ALLOWED, f"the query that finds old runs grows with the store: {find:.1f}x"
    assert purge <= PASS_ALLOWED, f"a retention pass grows with the store: {purge:.1f}x"


async def test_the_first_page_costs_the_same_however_many_old_runs_wait(store: Store) -> None:
    store.old_backlog_to(SMALL)
    small = await _best(lambda: _find_old_runs())
    store.old_backlog_to(BACKLOG)
    large = await _best(lambda: _find_old_runs())
    store.remove_backlog()

    ratio = _ratio("the first page of 100 while old runs wait", small, large)
    assert ratio <= QUERY_ALLOWED, f"the first page grows with the runs waiting: {ratio:.1f}x"
