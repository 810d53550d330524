"""Why a state is waiting, and when it should start (issue 18), from facts the server already
keeps: its status and due time, when a runtime last asked for its node's work, its place in its
node's queue, and how long its node's states take. Pure: no I/O.

Reasons so far: `delayed` (not due yet), `no_runtime` (due, but no runtime asked for its node
lately), `queued` (due, a runtime is taking its node's work: its place in the queue). The limits of
flow control (concurrency, rate limits) come with them.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime

from state_manager.domain.queues import due_at


@dataclass(frozen=True)
class WaitFacts:
    status: str
    node: str
    namespace: str
    now: int
    enqueue_after: int = 0
    priority_ms: int = 0
    not_before_ms: int | None = None
    last_poll_ms: int | None = None  # when a runtime last asked for this node's work
    poll_window_ms: int = 30_000  # "lately"
    ahead: int = 0  # due states of its node claimed before it
    running: int = 0  # its node's states claimed now (how many run side by side)
    durations_ms: list[int] = field(default_factory=list)  # its node's recent running times


@dataclass(frozen=True)
class Why:
    waiting: bool
    reason: str | None
    detail: str
    predicted_start_ms: int | None = None


_NOT_WAITING = {
    "QUEUED": "A runtime is running it.",
    "EXECUTED": "It ran; what follows it is being written.",
}


def _when(ms: int, now: int) -> str:
    at = datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    seconds = max(0, ms - now) / 1000
    return f"{at} ({seconds:.0f} s from now)" if seconds >= 1 else at


def why(facts: WaitFacts) -> Why:
    """Why a state in `facts` waits (or that it does not), and when it should start."""
    if facts.status != "CREATED":
        detail = _NOT_WAITING.get(facts.status, f"It has ended: {facts.status}.")
        return Why(False, None, detail)
    due = max(due_at(facts.enqueue_after, facts.priority_ms), facts.not_before_ms or 0)
    if due > facts.now:
        asked = " (its node asked to wait)" if facts.not_before_ms and facts.not_before_ms >= due else ""
        return Why(True, "delayed", f"It is not due until {_when(due, facts.now)}{asked}.", due)
    polled = facts.last_poll_ms is not None and facts.now - facts.last_poll_ms <= facts.poll_window_ms
    if not polled:
        since = (
            "no runtime has asked for it yet"
            if facts.last_poll_ms is None
            else f"no runtime has asked for it for {(facts.now - facts.last_poll_ms) / 1000:.0f} s"
        )
        return Why(
            True,
            "no_runtime",
            f"Node {facts.node} in namespace {facts.namespace} has work due, but {since}: "
            "start a runtime that runs it.",
        )
    place = facts.ahead + 1
    predicted = None
    if facts.durations_ms:
        rounds = -(-place // max(1, facts.running))  # ceil: how many turns of the running ones
        predicted = facts.now + int(statistics.median(facts.durations_ms)) * (rounds - 1)
    ahead = "next" if facts.ahead == 0 else f"number {place}"
    return Why(True, "queued", f"It is {ahead} in the queue of node {facts.node}.", predicted)
