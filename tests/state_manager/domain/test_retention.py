"""Which finished runs retention deletes, and how a pass walks the old ones (domain/retention.py)."""

from __future__ import annotations

from typing import Any

import mongomock
import pytest

from state_manager.domain.retention import (
    Walk,
    cutoff_ms,
    ended_before,
    may_hold_key,
    needs_original,
    purgeable,
)

NOW = 1_800_000_000_000
DAY = 86_400_000
CUTOFF = cutoff_ms(NOW, 30 * 86_400)  # RUN_RETENTION=30d


def run(**fields: Any) -> dict[str, Any]:
    """A run that ended 40 days ago, changed by `fields`."""
    ended = {"status": "SUCCESS", "finished_ms": NOW - 40 * DAY, "final": {"success_count": 2}, "open": 0}
    return {**ended, **fields}


# Each case: a run as stored, and whether it may go.
CASES = {
    "succeeded long ago": (run(), True),
    "failed long ago": (run(status="FAILED"), True),
    "cancelled long ago, nothing left running": (run(status="CANCELLED"), True),
    "ended just before the cutoff": (run(finished_ms=CUTOFF - 1), True),
    "ended at the cutoff": (run(finished_ms=CUTOFF), False),
    "ended yesterday": (run(finished_ms=NOW - DAY), False),
    "still running": (run(status="RUNNING", finished_ms=None, final=None, open=1), False),
    "never started": (run(status="PENDING", finished_ms=None, final=None, open=1), False),
    # A manual retry reopened it: no end stored, RUNNING again.
    "reopened": (run(status="RUNNING", finished_ms=None, final=None, open=1), False),
    # Cancelled long ago, but a claimed state is still running: it has not ended yet.
    "cancelled, a state still running": (run(status="CANCELLED", final=None, open=1), False),
    # Something was counted open again and the reopen is under way.
    "reopening": (run(open=1), False),
    "a status no run has": (run(status="SUCCEEDED"), False),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_run_may_go_once_it_has_ended_before_the_cutoff(name: str) -> None:
    doc, expected = CASES[name]
    assert purgeable(doc, CUTOFF) is expected


def test_the_delete_condition_says_the_same_as_the_rule() -> None:
    """`ended_before` is what the delete itself checks: a run that reopened after it was read
    is not deleted. Checked on MongoDB's query semantics (mongomock), case by case."""
    runs = mongomock.MongoClient().db.runs
    runs.insert_many([{"_id": name, **doc} for name, (doc, _) in CASES.items()])

    matched = {doc["_id"] for doc in runs.find(ended_before(CUTOFF))}

    assert matched == {name for name, (_, expected) in CASES.items() if expected}


def test_the_cutoff_is_now_minus_the_retention() -> None:
    assert cutoff_ms(NOW, 2.5) == NOW - 2500
    assert cutoff_ms(NOW, 30 * 86_400) == NOW - 30 * DAY


def test_an_original_is_needed_only_while_a_fork_of_it_is_being_written() -> None:
    assert needs_original([]) is False
    assert needs_original([{"seeded": True}]) is False  # a written fork needs nothing from it
    assert needs_original([{"seeded": True}, {"seeded": False}]) is True


def test_a_runs_idempotency_record_is_looked_for_only_while_it_may_be_unexpired() -> None:
    """A record expires IDEMPOTENCY_KEY_SECONDS after it was written, before its run was created:
    with RUN_RETENTION=30d and keys kept a day, a pass never has to look for one."""
    day = 86_400
    assert may_hold_key({"created_ms": NOW - 40 * DAY}, NOW, day) is False
    assert may_hold_key({"created_ms": NOW - DAY + 1}, NOW, day) is True
    assert may_hold_key({"created_ms": NOW - DAY}, NOW, day) is False
    assert may_hold_key({}, NOW, day) is False  # written before runs had a creation time


# ---------------------------------------------------------------- the walk


def ended(ms: int, oid: str) -> dict[str, Any]:
    return {"_id": oid, "finished_ms": ms}


def test_the_first_page_is_the_range_before_the_cutoff() -> None:
    walk = Walk()

    assert walk.query(CUTOFF) == {"finished_ms": {"$lt": CUTOFF}}
    assert walk.limit(100) == 100


def test_after_a_page_the_walk_starts_at_its_last_end() -> None:
    walk = Walk()
    walk.advance([ended(1, "a"), ended(2, "b"), ended(3, "c")], kept=set())

    assert walk.query(CUTOFF) == {"finished_ms": {"$lt": CUTOFF, "$gte": 3}}
    assert walk.limit(3) == 3  # nothing kept at 3: nothing of it comes back


def test_runs_kept_at_the_last_end_are_not_read_again_and_the_next_page_asks_for_more() -> None:
    """Runs that ended in the same millisecond across a page boundary are all seen once."""
    walk = Walk()
    walk.advance([ended(1, "a"), ended(5, "b"), ended(5, "c")], kept={"a", "c"})

    assert walk.limit(3) == 4
    page = [ended(5, "c"), ended(5, "d"), ended(6, "e")]
    assert walk.unseen(page) == [ended(5, "d"), ended(6, "e")]


def test_a_page_of_runs_that_all_stay_at_one_end_still_moves_on() -> None:
    walk = Walk()
    first = [ended(7, "a"), ended(7, "b")]
    walk.advance(first, kept={"a", "b"})
    second = [ended(7, "a"), ended(7, "b"), ended(7, "c"), ended(7, "d")]

    assert walk.limit(2) == 4
    assert walk.unseen(second) == [ended(7, "c"), ended(7, "d")]
    walk.advance(second, kept={"c", "d"})
    assert walk.limit(2) == 6  # four seen at 7: a page of 6 ends the walk if fewer come back
    walk.advance([ended(8, "e")], kept={"e"})
    assert walk.limit(2) == 3
    assert walk.query(CUTOFF)["finished_ms"]["$gte"] == 8


def test_walking_a_store_sees_every_old_run_once_however_the_pages_fall() -> None:
    """Many runs ending in the same milliseconds, some kept: every old run is read exactly once
    and the walk ends (the service's loop, against an in-memory list)."""
    stored = [ended(ms, f"r{i}") for i, ms in enumerate([1, 1, 1, 2, 2, 2, 2, 3, 3, 9, 9, 9, 9, 9])]
    stays = {"r0", "r2", "r4", "r5", "r6", "r10", "r11", "r12"}
    for size in (1, 2, 3, 5, 20):
        walk, seen, store = Walk(), [], list(stored)
        for _ in range(100):
            bound, limit = walk.query(10)["finished_ms"], walk.limit(size)
            page = [d for d in store if bound.get("$gte", 0) <= d["finished_ms"] < bound["$lt"]]
            page = sorted(page, key=lambda d: d["finished_ms"])[:limit]
            fresh = walk.unseen(page)
            seen += [d["_id"] for d in fresh]
            store = [d for d in store if d["_id"] in stays or d not in fresh]  # the others deleted
            walk.advance(page, kept={d["_id"] for d in fresh if d["_id"] in stays})
            if len(page) < limit:
                break
        else:
            raise AssertionError(f"pages of {size}: the walk did not end")
        assert sorted(seen) == sorted(d["_id"] for d in stored), size
