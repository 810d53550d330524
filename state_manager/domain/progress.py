"""What a run's stored progress must be, computed from its states: the reference for invariant I1.

A run's status, counts, start and end are stored on the run and changed by the writes that move
its states (`services/run_status.py`). At rest (no request in flight, one recovery pass done)
they must equal what `expected_progress` computes here from the run's states, whatever
interleaving or crash led there. The simulator tier (`tests/simulation/`) and the upgrade of
runs stored before the stored status (`services/upgrade.py`) both use this function.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from state_manager.domain.status import (
    FAILED,
    UNSETTLED,
    RunStatus,
    StateStatus,
    ended_run_status,
    run_status,
)


@dataclass(frozen=True)
class StateFacts:
    """What the progress of a run depends on, for one of its states."""

    status: StateStatus
    owes_effect: bool = False  # `pending_effect` is set: something must still follow its last write
    claimed_ms: int | None = None  # when its current (or last) attempt was claimed
    ended_ms: int | None = None  # when its attempt ended


@dataclass(frozen=True)
class Progress:
    status: RunStatus
    open: int  # states that can still change by themselves or still owe an effect
    counts: dict[str, int] = field(default_factory=dict)  # states per status
    settled: dict[str, int] = field(default_factory=dict)  # settled states per status
    started: bool = False  # a state of the run was claimed at some point
    ended: bool = False  # nothing in the run can happen any more (or it was cancelled)

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.counts.items() if StateStatus(status) in FAILED)


def is_open(facts: StateFacts) -> bool:
    """Whether this state can still change by itself, or still owes an effect (which may create
    states or fire a join)."""
    return facts.status in UNSETTLED or facts.owes_effect


def expected_progress(states: Iterable[StateFacts], *, cancelled: bool, seeded: bool = True) -> Progress:
    """A run's status, counts and whether it has started and ended, from its states.

    - open: some state is CREATED, QUEUED or EXECUTED, or owes an effect (or the run's root
      states are not written yet: `seeded` is False);
    - a run that is open is RUNNING once any of its states was claimed, else PENDING; a
      cancelled run is CANCELLED at once (what is still settling settles as cancelled);
    - a run that is not open has ended: CANCELLED if it was cancelled, else FAILED if any state
      failed (ERRORED, NEXT_CREATED_ERROR, TIMEDOUT, CANCELLED) or it has no states at all,
      else SUCCESS. RETRY_CREATED attempts are superseded by their retries and do not fail a run.
    """
    facts = list(states)
    counts = Counter(f.status.value for f in facts)
    settled = Counter(f.status.value for f in facts if not is_open(f))
    open_states = sum(1 for f in facts if is_open(f))
    started = any(f.claimed_ms is not None for f in facts)
    ended = open_states == 0 and seeded
    if cancelled:
        status = RunStatus.CANCELLED
    elif not ended:
        status = RunStatus.RUNNING if started else RunStatus.PENDING
    else:
        status = ended_run_status(run_status(f.status for f in facts), cancelled=False)
    return Progress(
        status=status,
        open=open_states,
        counts=dict(counts),
        settled=dict(settled),
        started=started,
        ended=ended,
    )
