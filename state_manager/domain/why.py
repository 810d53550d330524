"""Why a state is waiting, and when it should start (issue 18), from facts the server already
keeps: its status and due time, when a runtime last asked for its node's work, its place in its
node's queue, and how long its node's states take. Pure: no I/O.

Reasons: `delayed` (not due yet), `no_runtime` (due, but no runtime asked for its node lately),
`queued` (due, a runtime is taking its node's work: its place in the queue), and, for a due state
a flow-control gate holds back (domain/gates.py), `concurrency` (its node's slots are all held),
`run_concurrency` (its graph's run slots are all held: the run waits to start) and `rate_limit`
(its node's rate allows the next claim later). `join` is the reason of a state that ran whose join
waits for branches still open below it (what is waiting is the join, not made yet).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime

from state_manager.domain.queues import due_at


@dataclass(frozen=True)
class GateFacts:
    """The gate a state is parked at, as read: its setting, who holds its slots, its rate."""

    kind: str  # domain/gates.py: CONCURRENCY, RUNS or RATE
    key: str | None
    graph: str
    limit: int | None = None
    holders: list[str] = field(default_factory=list)  # state ids (slots) or run ids (run slots)
    holders_started_ms: list[int] = field(default_factory=list)  # when each holder was claimed
    per_second: float | None = None
    burst: int | None = None
    next_slot_ms: int | None = None  # rate: when the next claim is allowed


@dataclass(frozen=True)
class JoinFacts:
    """A join above a state that ran, not made yet: the branches below its anchor."""

    join: str
    settled: int
    total: int
    open_ids: list[str] = field(default_factory=list)


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
    gate: GateFacts | None = None  # the gate it is parked at (`ahead`: parked before it there)
    join: JoinFacts | None = None  # a state that ran: the join above it not made yet


@dataclass(frozen=True)
class Why:
    waiting: bool
    reason: str | None
    detail: str
    predicted_start_ms: int | None = None
    blockers: list[str] = field(default_factory=list)


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
    if facts.join is not None:
        return _join(facts.join)
    if facts.status != "CREATED":
        detail = _NOT_WAITING.get(facts.status, f"It has ended: {facts.status}.")
        return Why(False, None, detail)
    if facts.gate is not None:
        return _gated(facts, facts.gate)
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


def _place(ahead: int) -> str:
    return "next" if ahead == 0 else f"number {ahead + 1}"


def _for_key(key: str | None) -> str:
    return "" if key is None else f" for key {key!r}"


def _gated(facts: WaitFacts, gate: GateFacts) -> Why:
    if gate.kind == "rate_limit":
        return _rated(facts, gate)
    held = len(gate.holders)
    if gate.kind == "run_concurrency":
        detail = (
            f"Graph {gate.graph} runs at most {gate.limit} at once{_for_key(gate.key)}; {held} of "
            f"{gate.limit} are running, so this run waits to start (it is {_place(facts.ahead)} in line)."
        )
        return Why(True, "run_concurrency", detail, None, list(gate.holders))
    detail = (
        f"Node {facts.node} runs at most {gate.limit} at once{_for_key(gate.key)}; {held} of "
        f"{gate.limit} are held, so it waits for a slot (it is {_place(facts.ahead)} in line)."
    )
    return Why(True, "concurrency", detail, _slot_start(facts, gate), list(gate.holders))


def _slot_start(facts: WaitFacts, gate: GateFacts) -> int | None:
    """When the slot this state gets frees: the holders end after the node's median running
    time, and each later turn takes another."""
    if not facts.durations_ms or not gate.limit:
        return None
    typical = int(statistics.median(facts.durations_ms))
    ends = sorted(max(facts.now, started + typical) for started in gate.holders_started_ms)
    ends += [facts.now] * max(0, gate.limit - len(ends))  # slots free now (taken back soon)
    turn, slot = divmod(facts.ahead, max(1, len(ends)))
    return ends[slot] + turn * typical


def _rated(facts: WaitFacts, gate: GateFacts) -> Why:
    rate = f"{gate.per_second:g} per second" if gate.per_second else "its rate"
    burst = f" in bursts of up to {gate.burst}" if gate.burst and gate.burst > 1 else ""
    predicted = None
    if gate.next_slot_ms is not None and gate.per_second:
        predicted = max(facts.now, gate.next_slot_ms) + int(facts.ahead * 1000 / gate.per_second)
    when = (
        f"; the next claim is allowed at {_when(gate.next_slot_ms, facts.now)}" if gate.next_slot_ms else ""
    )
    detail = (
        f"Node {facts.node} is claimed at most {rate}{burst}{_for_key(gate.key)}{when} "
        f"(it is {_place(facts.ahead)} in line)."
    )
    return Why(True, "rate_limit", detail, predicted)


def _join(join: JoinFacts) -> Why:
    detail = (
        f"It ran; join {join.join} waits for the branches below it: {join.settled} of {join.total} settled."
    )
    return Why(True, "join", detail, None, list(join.open_ids))
