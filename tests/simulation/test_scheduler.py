"""The scheduler itself, on two tiny operations against a bare mongomock-motor collection: it
interleaves at store calls, explores every interleaving, replays exactly and crashes where told."""

from __future__ import annotations

import itertools
import sys
from math import comb

from mongomock_motor import AsyncMongoMockClient

from tests.simulation.scheduler import Chooser, Crash, Scheduler, next_prefix


def _collection() -> object:
    return AsyncMongoMockClient()["sim"]["log"]


def _two_writers(collection: object) -> list[tuple[str, object]]:
    """Operations A and B, each inserting two documents (two store calls each)."""

    def writer(name: str) -> object:
        async def run() -> str:
            for n in (1, 2):
                await collection.insert_one({"op": name, "n": n})  # type: ignore[attr-defined]
            return name

        return run

    return [("A", writer("A")), ("B", writer("B"))]


async def _run(
    prefix: list[int], crash: Crash | None = None, seed: int | None = None
) -> tuple[Scheduler, list[str]]:
    import random

    collection = _collection()
    scheduler = Scheduler(Chooser(prefix, random.Random(seed) if seed is not None else None), crash)
    results = await scheduler.run(_two_writers(collection))  # type: ignore[arg-type]
    docs = await collection.find({}).sort("_id").to_list(None)  # type: ignore[attr-defined]
    order = [f"{d['op']}{d['n']}" for d in docs]
    assert all(r.error is None for r in results)
    return scheduler, order


def _all_interleavings() -> set[tuple[str, ...]]:
    found = set()
    for positions in itertools.combinations(range(4), 2):
        order, a, b = [], iter(["A1", "A2"]), iter(["B1", "B2"])
        for i in range(4):
            order.append(next(a) if i in positions else next(b))
        found.add(tuple(order))
    return found


async def test_the_package_under_test_is_this_checkouts() -> None:
    import state_manager

    root = __file__.rsplit("/tests/", 1)[0]
    assert state_manager.__file__.startswith(root + "/"), (state_manager.__file__, sys.path[:3])


async def test_exhaustive_enumeration_visits_every_interleaving_once() -> None:
    schedules, orders = [], []
    prefix: list[int] | None = []
    while prefix is not None:
        scheduler, order = await _run(prefix)
        schedules.append(tuple(scheduler.choices))
        orders.append(tuple(order))
        prefix = next_prefix(scheduler.decisions, None)

    # Each operation has 4 gates (start, two inserts, answer): C(8, 4) schedules, all distinct,
    # and they cover each of the C(4, 2) orders of the four inserts.
    assert len(schedules) == len(set(schedules)) == comb(8, 4)
    assert set(orders) == _all_interleavings()


async def test_a_preemption_bound_limits_the_schedules() -> None:
    counts = {}
    for bound in (0, 1):
        n, prefix = 0, []
        while prefix is not None:
            scheduler, _ = await _run(prefix)
            n += 1
            assert sum(d.preempts for d in scheduler.decisions) <= bound
            prefix = next_prefix(scheduler.decisions, bound)
        counts[bound] = n

    assert counts[0] == 2  # A then B, B then A
    assert 2 < counts[1] < comb(8, 4)


async def test_a_seed_or_its_recorded_choices_repeat_the_schedule_exactly() -> None:
    first, order = await _run([], seed=7)
    again, order_again = await _run([], seed=7)
    replayed, order_replayed = await _run(first.choices)

    assert first.calls == again.calls == replayed.calls
    assert order == order_again == order_replayed


async def test_a_crash_stops_the_operation_before_that_call() -> None:
    collection = _collection()
    scheduler = Scheduler(Chooser([]), Crash(0, 3))  # A's gates: start, insert 1, insert 2
    results = await scheduler.run(_two_writers(collection))  # type: ignore[arg-type]
    docs = await collection.find({}).sort("_id").to_list(None)  # type: ignore[attr-defined]

    assert [f"{d['op']}{d['n']}" for d in docs] == ["A1", "B1", "B2"]
    assert results[0].crashed and results[0].value is None and results[0].answered is None
    assert results[1].value == "B" and not results[1].crashed
