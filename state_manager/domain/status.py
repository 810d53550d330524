"""The state status machine, as data.

Statuses are the union of both upstream eras (SEED's ten plus HEAD's PRUNED)::

    (trigger / next / retry / join)
            │
            ▼                 requeue_after
         CREATED ◄──────────────────────────────┐
            │ enqueue (lease starts)            │
            ▼                                   │
         QUEUED ──── prune ──────────────► PRUNED
            │  ├──── errored (retries left) ─► RETRY_CREATED ──► (new CREATED copy)
            │  ├──── errored (none left) ────► ERRORED ─┐
            │  ├──── lease expired, retry ───► RETRY_CREATED
            │  └──── lease expired, none ────► TIMEDOUT ─┤ manual_retry
            │ executed                                   ▼
            ▼                                      RETRY_CREATED
         EXECUTED ── next_created ──► SUCCESS
                  └─ next_failed ───► NEXT_CREATED_ERROR ── manual_retry ──► RETRY_CREATED

         QUEUED ── executed_final ──► SUCCESS (a report with one output of a node with no next
         node: nothing to write after it, so no EXECUTED step)

    CREATED / QUEUED ── cancel ──► CANCELLED (also: a join that can never be satisfied is
    created directly as CANCELLED, with the reason in `error`).

    any state with a pending effect ── effects_failed ──► NEXT_CREATED_ERROR (what must follow
    its last write kept failing; the reason is in `error`, so nothing waits on it forever).

    a join (CREATED, QUEUED, SUCCESS, PRUNED or failed) ── rejoin ──► RETRY_CREATED: a branch below
    it was repaired, so it is made again (the next generation) from the branches as they are.

Every status write in the services is a conditional update whose filter is `sources(event)`,
so a transition that is not in this table cannot happen, whatever the race.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from enum import StrEnum


class StateStatus(StrEnum):
    CREATED = "CREATED"
    QUEUED = "QUEUED"
    EXECUTED = "EXECUTED"
    NEXT_CREATED = "NEXT_CREATED"  # SEED enum value; never set
    RETRY_CREATED = "RETRY_CREATED"
    TIMEDOUT = "TIMEDOUT"
    ERRORED = "ERRORED"
    CANCELLED = "CANCELLED"
    SUCCESS = "SUCCESS"
    NEXT_CREATED_ERROR = "NEXT_CREATED_ERROR"
    PRUNED = "PRUNED"


class Event(StrEnum):
    ENQUEUE = "enqueue"
    EXECUTED = "executed"
    EXECUTED_FINAL = "executed_final"
    NEXT_CREATED = "next_created"
    NEXT_FAILED = "next_failed"
    ERRORED_RETRY = "errored_retry"
    ERRORED = "errored"
    LEASE_EXPIRED_RETRY = "lease_expired_retry"
    LEASE_EXPIRED = "lease_expired"
    PRUNE = "prune"
    REQUEUE_AFTER = "requeue_after"
    MANUAL_RETRY = "manual_retry"
    CANCEL = "cancel"
    EFFECTS_FAILED = "effects_failed"
    REJOIN = "rejoin"


S = StateStatus
FAILED_TERMINAL = frozenset({S.ERRORED, S.NEXT_CREATED_ERROR, S.TIMEDOUT, S.CANCELLED})

TRANSITIONS: dict[Event, tuple[frozenset[StateStatus], StateStatus]] = {
    Event.ENQUEUE: (frozenset({S.CREATED}), S.QUEUED),
    Event.EXECUTED: (frozenset({S.QUEUED}), S.EXECUTED),
    # A report that leaves nothing to write after it (one output, no next node): SUCCESS at once.
    Event.EXECUTED_FINAL: (frozenset({S.QUEUED}), S.SUCCESS),
    Event.NEXT_CREATED: (frozenset({S.EXECUTED}), S.SUCCESS),
    Event.NEXT_FAILED: (frozenset({S.EXECUTED}), S.NEXT_CREATED_ERROR),
    Event.ERRORED_RETRY: (frozenset({S.QUEUED}), S.RETRY_CREATED),
    Event.ERRORED: (frozenset({S.QUEUED}), S.ERRORED),
    Event.LEASE_EXPIRED_RETRY: (frozenset({S.QUEUED}), S.RETRY_CREATED),
    Event.LEASE_EXPIRED: (frozenset({S.QUEUED}), S.TIMEDOUT),
    Event.PRUNE: (frozenset({S.QUEUED}), S.PRUNED),
    Event.REQUEUE_AFTER: (frozenset({S.QUEUED, S.CREATED}), S.CREATED),
    Event.MANUAL_RETRY: (FAILED_TERMINAL, S.RETRY_CREATED),
    Event.CANCEL: (frozenset({S.CREATED, S.QUEUED}), S.CANCELLED),
    # Every status after a report can carry a pending effect (see `services/progress.py`).
    Event.EFFECTS_FAILED: (frozenset(S) - {S.CREATED, S.QUEUED, S.NEXT_CREATED}, S.NEXT_CREATED_ERROR),
    # A join superseded by a repair of a branch below it: made again from the branches as they are.
    Event.REJOIN: (FAILED_TERMINAL | {S.CREATED, S.QUEUED, S.SUCCESS, S.PRUNED}, S.RETRY_CREATED),
}

# Run-level grouping, as upstream HEAD counts runs (plus our TIMEDOUT and CANCELLED).
PENDING = frozenset({S.CREATED, S.QUEUED, S.EXECUTED})
SUCCEEDED = frozenset({S.SUCCESS, S.PRUNED})
FAILED = frozenset({S.ERRORED, S.NEXT_CREATED_ERROR, S.TIMEDOUT, S.CANCELLED})
RETRIED = frozenset({S.RETRY_CREATED})
# Terminal: nothing more will happen to this state by itself.
TERMINAL = SUCCEEDED | FAILED | RETRIED
UNSETTLED = frozenset(StateStatus) - TERMINAL
# The events that end an attempt (its node reported, failed, timed out or was cancelled).
ENDS_ATTEMPT = frozenset(
    {
        Event.EXECUTED,
        Event.EXECUTED_FINAL,
        Event.ERRORED_RETRY,
        Event.ERRORED,
        Event.LEASE_EXPIRED_RETRY,
        Event.LEASE_EXPIRED,
        Event.PRUNE,
        Event.CANCEL,
    }
)


def sources(event: Event) -> frozenset[StateStatus]:
    """The statuses from which `event` may be applied."""
    return TRANSITIONS[event][0]


def target(event: Event) -> StateStatus:
    return TRANSITIONS[event][1]


def run_status(statuses: Iterable[StateStatus], effects_pending: bool = False) -> str:
    """PENDING while anything may still happen, else FAILED if anything failed, else SUCCESS.

    A run with no states at all is FAILED, as upstream.
    """
    seen = list(statuses)
    if effects_pending or any(s in PENDING for s in seen):
        return "PENDING"
    if not seen or any(s in FAILED for s in seen):
        return "FAILED"
    return "SUCCESS"


def run_counts(statuses: Iterable[StateStatus], effects_pending: bool = False) -> dict[str, int | str]:
    """The counts of a run as the runs listing shows them, and its status."""
    return tally(Counter(statuses), effects_pending)


def tally(counts: Mapping[StateStatus, int], effects_pending: bool = False) -> dict[str, int | str]:
    """`run_counts` from the number of states in each status."""
    present = [status for status, n in counts.items() if n]

    def count(group: frozenset[StateStatus]) -> int:
        return sum(n for status, n in counts.items() if status in group)

    return {
        "success_count": count(SUCCEEDED),
        "pending_count": count(PENDING),
        "errored_count": count(FAILED),
        "retried_count": count(RETRIED),
        "total_count": sum(counts.values()),
        "status": run_status(present, effects_pending),
    }


class JoinVerdict(StrEnum):
    WAIT = "WAIT"
    FIRE = "FIRE"
    FAIL = "FAIL"


def join_verdict(strategy: str, statuses: Iterable[StateStatus]) -> JoinVerdict:
    """Decide a join from the statuses of every state below its `unites` anchor.

    ALL_DONE fires once everything is terminal. ALL_SUCCESS fires once everything succeeded
    (RETRY_CREATED is superseded by its retry, which is in scope too), and fails as soon as
    everything is terminal and something failed - so a join never waits forever.
    """
    seen = list(statuses)
    if any(s not in TERMINAL for s in seen):
        return JoinVerdict.WAIT
    if strategy == "ALL_SUCCESS" and any(s in FAILED for s in seen):
        return JoinVerdict.FAIL
    return JoinVerdict.FIRE


class RunStatus(StrEnum):
    """A run's stored status (the dashboard's and the CLI's)."""

    PENDING = "PENDING"  # nothing of it has been claimed yet (e.g. a delayed start)
    RUNNING = "RUNNING"  # a state was claimed; the run has not ended
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


FINAL_RUN_STATUSES = frozenset({RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.CANCELLED})


def ended_run_status(counted: str, *, cancelled: bool) -> RunStatus:
    """The stored status of a run that has ended, from `run_status`'s answer (SUCCESS or FAILED):
    a cancelled run stays CANCELLED."""
    return RunStatus.CANCELLED if cancelled else RunStatus(counted)


def upstream_run_status(status: str) -> str:
    """How `GET /runs/{page}/{size}` shows a stored status: upstream knows no RUNNING."""
    return "PENDING" if status == RunStatus.RUNNING else status


def node_status(counts: Mapping[StateStatus, int]) -> str:
    """The status of one template node in a run, from the counts of its states:

    NOT_STARTED (no state yet), RUNNING (one is claimed or reported), PENDING (only waiting
    ones), FAILED (a failure nobody retried, and nothing still to happen), CANCELLED (only
    cancelled ones, or some cancelled), SUCCESS (all succeeded or were pruned; retried attempts do not count).
    """
    present = {status for status, n in counts.items() if n}
    if not present:
        return "NOT_STARTED"
    if present & {S.QUEUED, S.EXECUTED}:
        return "RUNNING"
    if S.CREATED in present:
        return "PENDING"
    if present & (FAILED - {S.CANCELLED}):
        return "FAILED"
    if S.CANCELLED in present:
        return "CANCELLED"
    return "SUCCESS" if present & SUCCEEDED else "PENDING"
