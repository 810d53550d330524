"""A run's stored status: PENDING, RUNNING from the first claim of one of its states, then
SUCCESS, FAILED or CANCELLED, with when it started and finished and its counts.

- `runs_claimed` after a claim: PENDING runs become RUNNING, and states claimed in a cancelled
  run are not handed out;
- `finish_if_done` after a state settles (its last effect written): when nothing in the run can
  still happen, the run's counts, status and end time are stored, once (a conditional write on
  the run's `revision`, which every reopening bumps);
- `sweep` in the recovery pass: a crash between a state's last write and `finish_if_done` would
  leave a run open; open runs are checked now and then (further apart as they age) and finished.

Two settles that end a run's last two states at once cannot both miss the end: each probes
after its own closing write, so the later probe sees both.
"""

from __future__ import annotations

from typing import Any

import structlog

from state_manager import metrics
from state_manager.clock import now_ms
from state_manager.db import queries
from state_manager.db.documents import Run
from state_manager.domain.status import ended_run_status, tally

log = structlog.get_logger(__name__)

FIRST_CHECK_MS = 60_000  # a run is first checked by the sweep this long after it was created
LONGEST_CHECK_MS = 3_600_000


def sort_key(run: Run) -> str:
    """`Run.sort_key`: creation time, then run id (unique, ordered like creation)."""
    return f"{run.created_ms:013d}:{run.run_id}"


def key_bound(epoch_ms: int) -> str:
    """The smallest sort key of a run created at `epoch_ms`."""
    return f"{epoch_ms:013d}:"


async def runs_claimed(run_ids: set[str]) -> set[str]:
    """After a claim of states of these runs: mark the PENDING ones RUNNING, and return the ones
    that were cancelled, whose claimed states must not be handed out.

    A cancel flags and cancels every waiting state of its run before it answers, but a settle in
    flight may still write a state into the run just after; until that settle's closing write
    cancels it, a claim can take it. Reading the runs after the claim closes that gap: a cancel
    that has answered was written before this read.
    """
    if not run_ids:
        return set()
    found = Run.get_motor_collection().find(
        {"run_id": {"$in": sorted(run_ids)}}, {"run_id": 1, "status": 1, "cancelled_at": 1}
    )
    runs = [doc async for doc in found]
    pending = [doc["run_id"] for doc in runs if doc.get("status") == "PENDING"]
    if pending:
        await queries.mark_runs_started(pending, now_ms())
    return {doc["run_id"] for doc in runs if doc.get("cancelled_at") is not None}


async def finish_if_done(run_id: str) -> Run | None:
    """Store the run's end if nothing in it can still happen; the finished run, or None."""
    if await queries.run_may_change(run_id):  # the usual answer while a run goes on: one probe
        return None
    run = await queries.find_one(Run, {"run_id": run_id})
    if run is None:
        return None
    if run.final is not None:
        # Ended already: by a settle that ended another of its last states at the same time (then
        # the stored counts are what is there), or before something reopened the run without
        # saying so (a crash between a retry's or `states/create`'s write and the run's reopen,
        # or an end stored between them). Then reopen it and end it again from what is there.
        statuses, owing = await queries.run_snapshot(run_id)
        if not owing and {s.value: n for s, n in statuses.items() if n} == run.counts:
            return None
        log.warning("run_end_revised", run_id=run_id, graph=run.graph_name, status=run.status)
        await queries.reopen_run(run_id)
        run = await queries.find_one(Run, {"run_id": run_id})
        if run is None:
            return None
    return await finish(run, probed=True)


async def finish(run: Run, *, probed: bool = False) -> Run | None:
    """Store the run's counts, status and end time if it has ended; the finished run, or None if
    it has not ended or changed since it was read.

    Ended is decided three times over, so that a state moving while it is read cannot make a run
    end early: the probes find nothing that may still happen (`probed`: the caller just did),
    one aggregation counts nothing unsettled or owed (it sees the children of a state that
    cleared its effect between the two probes), and the probes again find nothing. The write is
    conditional on the run's `revision`, so a retry that reopened the run meanwhile wins.
    """
    if not probed and await queries.run_may_change(run.run_id):
        return None
    statuses, pending = await queries.run_snapshot(run.run_id)
    counted = tally(statuses, effects_pending=pending or not run.seeded)
    if counted["status"] == "PENDING" or await queries.run_may_change(run.run_id):
        return None
    cancelled = run.cancelled_at is not None
    status = ended_run_status(str(counted["status"]), cancelled=cancelled)
    fields: dict[str, Any] = {
        "final": counted,
        "counts": {s.value: n for s, n in statuses.items() if n},
        "status": status.value,
        "finished_ms": run.finished_ms or now_ms(),
    }
    if not await queries.finish_run(run, fields):
        return None
    log.info(
        "run_finished",
        namespace=run.namespace_name,
        graph=run.graph_name,
        run_id=run.run_id,
        status=status.value,
        states=counted["total_count"],
        failed=counted["errored_count"],
        duration_ms=fields["finished_ms"] - run.created_ms,
    )
    finished: Run = run.model_copy(update=fields)
    metrics.run_finished(finished)
    return finished


def next_check_ms(run: Run, now: int) -> int:
    """When the sweep looks at an open run again: half its age from now, within limits."""
    return now + min(max((now - run.created_ms) // 2, FIRST_CHECK_MS), LONGEST_CHECK_MS)


async def sweep(batch_size: int) -> int:
    """Check the open runs that are due for a check; how many were finished."""
    now = now_ms()
    due = {"final": None, "seeded": True, "check_after_ms": {"$lte": now}}
    runs = await Run.find(due).sort("check_after_ms").limit(batch_size).to_list()
    finished = 0
    for run in runs:
        try:
            ended = await finish(run)
        except Exception:  # a run that cannot be checked must not stop the others
            log.exception("run_check_failed", run_id=run.run_id, graph=run.graph_name)
            ended = None
        if ended is not None:
            finished += 1
            log.warning("run_end_recovered", run_id=run.run_id, graph=run.graph_name)
            continue
        await Run.get_motor_collection().update_one(
            {"_id": run.id, "final": None}, {"$set": {"check_after_ms": next_check_ms(run, now)}}
        )
    return finished
