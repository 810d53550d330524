"""Which finished runs retention deletes (RUN_RETENTION), and how a pass walks the old ones.

A run may go when all of these hold:

- it has **ended**: its status is SUCCESS, FAILED or CANCELLED, its end is stored (`final`) and
  nothing in it is open. A cancelled run whose claimed states are still running has a
  `finished_ms` (the cancel) but has not ended yet; a run that reopened (a manual retry, a
  repaired join) has no end stored until it ends again;
- it ended (`finished_ms`) before the cutoff: now minus RUN_RETENTION;
- no fork of it is still being written (`seeded` False): recovery finishes such a fork by
  copying from the original. A fork that is written needs nothing from its original.

The first two are also the condition of the delete itself (`ended_before`), so a run that
reopens between the read and the delete stays. This module decides; `services/retention.py`
reads and deletes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from state_manager.domain.status import FINAL_RUN_STATUSES

ENDED = sorted(status.value for status in FINAL_RUN_STATUSES)

# What a pass reads of each candidate run (never `owed` or `store`, which grow with the run).
CANDIDATE_FIELDS = (
    "run_id",
    "namespace_name",
    "graph_name",
    "status",
    "created_ms",
    "finished_ms",
    "final",
    "open",
)


def cutoff_ms(now_ms: int, retention_seconds: float) -> int:
    """Runs that ended before this (epoch ms) are old enough to go."""
    return now_ms - round(retention_seconds * 1000)


def ended_before(cutoff: int) -> dict[str, Any]:
    """The delete's condition: the run has ended, nothing in it is open, and it ended before
    `cutoff`. The same rule as `purgeable`, as a MongoDB filter."""
    return {
        "status": {"$in": ENDED},
        "finished_ms": {"$lt": cutoff},
        "final": {"$ne": None},
        "open": {"$lte": 0},
    }


def purgeable(run: Mapping[str, Any], cutoff: int) -> bool:
    """Whether `run` (a stored run document) has ended before `cutoff` (`ended_before`)."""
    finished = run.get("finished_ms")
    return (
        run.get("status") in ENDED
        and isinstance(finished, int)
        and finished < cutoff
        and run.get("final") is not None
        and run.get("open", 0) <= 0
    )


def needs_original(forks: Sequence[Mapping[str, Any]]) -> bool:
    """Whether a run's forks (their `seeded` field) still need it: one is not written yet."""
    return any(fork.get("seeded") is False for fork in forks)


def may_hold_key(run: Mapping[str, Any], now_ms: int, key_seconds: float) -> bool:
    """Whether the idempotency record of a run (if it was triggered with an Idempotency-Key)
    may still be stored: a record expires IDEMPOTENCY_KEY_SECONDS after it was written, which
    was before its run was created. (One past that is removed by its TTL index, and is never
    honoured meanwhile.)"""
    created: int = run.get("created_ms") or 0
    return created + round(key_seconds * 1000) > now_ms


@dataclass
class Walk:
    """A pass's way through the old runs, oldest end first, a page at a time.

    Runs that are deleted leave the range, so each page starts at the end time of the last run
    read (`since`); the runs read there and kept (ended at that same millisecond) are left out
    of the next page, which asks for that many more. So runs that end in the same millisecond
    are all seen, and a page of runs that stay never makes the walk go round in circles.
    """

    since: int | None = None
    seen_at_since: set[Any] = field(default_factory=set)

    def query(self, cutoff: int) -> dict[str, Any]:
        """The next page's filter: a range on `finished_ms` alone (one single-field index)."""
        ended: dict[str, int] = {"$lt": cutoff}
        if self.since is not None:
            ended["$gte"] = self.since
        return {"finished_ms": ended}

    def limit(self, page: int) -> int:
        return page + len(self.seen_at_since)

    def unseen(self, docs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The runs of a page that this walk has not read before."""
        return [doc for doc in docs if doc["_id"] not in self.seen_at_since]

    def advance(self, docs: Sequence[Mapping[str, Any]], kept: set[Any]) -> None:
        """After a page (`docs`, oldest end first) of which the runs `kept` (their `_id`s) stay."""
        if not docs:
            return
        last = docs[-1]["finished_ms"]
        if last != self.since:
            self.since, self.seen_at_since = last, set()
        self.seen_at_since |= {
            doc["_id"] for doc in docs if doc["finished_ms"] == last and doc["_id"] in kept
        }
