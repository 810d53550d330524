"""What must follow a status write, as data: the second half of the state machine.

A status write records, in the same conditional update, the first effect still owed
(`State.pending_effect`); `services/progress.settle` carries the effects out in order, and the
recovery pass completes whatever a crash interrupted. The table, by the event written::

    event                              pending effect   what it stands for
    ---------------------------------  ---------------  -----------------------------------------
    executed                           spawn            fan-out copies and the next states
    errored_retry, lease_expired_retry spawn            the retry copy (a new CREATED attempt)
    manual_retry                       spawn            the operator's retry copy
    rejoin                             spawn            the join's next generation, once its
                                                        branches have settled
    next_created, next_failed          joins            re-evaluate the joins above the state
    executed_final                     joins (tally)    the same, for a report with nothing to
                                                        spawn ("tally" when no join can care)
    errored, lease_expired, prune      joins
    cancel, effects_failed             joins
    enqueue, requeue_after             (none)           nothing follows a claim or a delay

    spawn ──► joins ──► tally ──► (none)   after an executed state's spawn (joins skipped when
                                           no join can care)
    spawn ──► tally ──► (none)             after a retry copy, when no join waits above it (else
                                           "joins" counts it below the anchors, with its copy)
    joins ──► tally ──► (none)             after any other terminal write

The last stage of a terminal state, "tally", counts it settled in its run, with the states its
settle created (domain/tally.py); the run ends when nothing in it is open any more.

Both effects are idempotent (every created state has a deterministic `spawn_key` under a unique
index), so a repeat, a recovery pass and another replica may all run them.
"""

from __future__ import annotations

from enum import StrEnum

from state_manager.domain.status import TERMINAL, Event, StateStatus


class Effect(StrEnum):
    SPAWN = "spawn"
    JOINS = "joins"
    TALLY = "tally"


PENDING_AFTER: dict[Event, Effect | None] = {
    Event.ENQUEUE: None,
    Event.REQUEUE_AFTER: None,
    Event.EXECUTED: Effect.SPAWN,
    Event.EXECUTED_FINAL: Effect.JOINS,  # or straight to "tally" when no join can care
    Event.ERRORED_RETRY: Effect.SPAWN,
    Event.LEASE_EXPIRED_RETRY: Effect.SPAWN,
    Event.MANUAL_RETRY: Effect.SPAWN,
    Event.NEXT_CREATED: Effect.JOINS,
    Event.NEXT_FAILED: Effect.JOINS,
    Event.ERRORED: Effect.JOINS,
    Event.LEASE_EXPIRED: Effect.JOINS,
    Event.PRUNE: Effect.JOINS,
    Event.CANCEL: Effect.JOINS,
    Event.EFFECTS_FAILED: Effect.JOINS,
    Event.REJOIN: Effect.SPAWN,
}


def pending_after(event: Event) -> Effect | None:
    """The effect a write of `event` owes."""
    return PENDING_AFTER[event]


def after_spawn(status: StateStatus) -> Effect:
    """What is still owed once the spawn effect of a state in `status` is written.

    A retry copy supersedes the state in every join's scope, so only the other outcomes owe a
    joins evaluation (a retried state below a join's anchor is still counted there by a joins
    stage: `progress._spawn` decides that with the graph); every state then owes its tally.
    """
    return Effect.TALLY if status == StateStatus.RETRY_CREATED else Effect.JOINS


def owed_after(status: StateStatus, effect: Effect | None) -> Effect | None:
    """What a state in `status` owes once `effect` is done: a state that is terminal is counted
    settled in its run (the tally) before it owes nothing; a state still going owes nothing."""
    if effect is None or effect == Effect.TALLY:
        return None
    return Effect.TALLY if status in TERMINAL else None
