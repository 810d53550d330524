"""A run's stored progress: status, counts, start and end, changed once by each state's creation
and settlement (decision 0020; the updates are built in `domain/tally.py`).

- `runs_claimed` after a claim: PENDING runs become RUNNING; states claimed in a cancelled run
  are not handed out.
- `count_settled`: the "tally" stage, the last effect of every terminal state: one conditional
  update counts it settled (and registers the states its settle created), exactly once, however
  often it is repeated (a repeated report, recovery, a second replica).
- `register`: new states counted open (a run's seeds, a `states/create` batch).
- `reopen_state`: a settled state counted open again (a retry of it, a join superseded by a repair).
- After each of these, `conclude` looks at the run as the update left it: it ends the run (one
  conditional write, logged and counted once) when nothing in it is open any more, and reopens
  a run that had ended when something in it is open again.

Nothing here probes or counts a run's states.
"""

from __future__ import annotations

from typing import Any

import structlog
from pymongo import ReturnDocument

from state_manager import metrics
from state_manager.clock import now_ms
from state_manager.db import queries
from state_manager.db.documents import Run, State
from state_manager.domain import tally
from state_manager.domain.status import FAILED, RunStatus, StateStatus
from state_manager.domain.status import tally as upstream_tally
from state_manager.services import gates

log = structlog.get_logger(__name__)

# What `conclude` needs of a run (never `owed`, which grows with the run).
_PROGRESS = {
    "run_id": 1,
    "namespace_name": 1,
    "graph_name": 1,
    "created_ms": 1,
    "created": 1,
    "open": 1,
    "settled": 1,
    "final": 1,
    "counts": 1,
    "status": 1,
    "cancelled_at": 1,
    "finished_ms": 1,
    "run_gate": 1,
}
_ATTEMPTS = 5
SEEDS = "s"  # the tally group of a run's root states


def sort_key(run: Run) -> str:
    """`Run.sort_key`: creation time, then run id (unique, ordered like creation)."""
    return f"{run.created_ms:013d}:{run.run_id}"


def key_bound(epoch_ms: int) -> str:
    """The smallest sort key of a run created at `epoch_ms`."""
    return f"{epoch_ms:013d}:"


_LISTING_SEPARATOR = "\x1f"


def listing_key(namespace: str, key: str) -> str:
    """`Run.listing_key` of a run of `namespace` whose sort key is `key`."""
    return f"{namespace}{_LISTING_SEPARATOR}{key}"


def set_keys(run: Run) -> None:
    """Give a new run its `sort_key` and `listing_key`."""
    run.sort_key = sort_key(run)
    run.listing_key = listing_key(run.namespace_name, run.sort_key)


def listing_range(namespace: str, since: str | None = None, before: str | None = None) -> dict[str, str]:
    """The `listing_key` condition of a namespace's runs whose sort keys are at least `since` and
    below `before` (each optional)."""
    return {
        "$gte": listing_key(namespace, since or ""),
        "$lt": listing_key(namespace, before) if before is not None else namespace + chr(0x1F + 1),
    }


def _runs() -> Any:
    return Run.get_motor_collection()


# Run id -> the run document's `_id`, for runs this process has written or read: a run is then
# addressed by its primary key, which the embedded engine looks up at once even when the rest of
# a conditional write's filter does not match (by `run_id`, a write that matches nothing scans
# every run there). A fact that never changes; entries are dropped when a write misses.
_run_oids: dict[str, Any] = {}
_RUN_OIDS_KEPT = 100_000


def remember(run_id: str, oid: Any) -> None:
    """Note the `_id` of a run (after writing or reading it)."""
    if oid is None:
        return
    if len(_run_oids) >= _RUN_OIDS_KEPT:
        _run_oids.clear()
    _run_oids[run_id] = oid


def _where(run_id: str) -> dict[str, Any]:
    """The filter of one run: by its `_id` when known here, else by its run id."""
    oid = _run_oids.get(run_id)
    return {"run_id": run_id} if oid is None else {"_id": oid, "run_id": run_id}


async def runs_claimed(run_ids: set[str]) -> set[str]:
    """After a claim of states of these runs: mark the PENDING ones RUNNING, and return the ones
    that were cancelled, whose claimed states must not be handed out.

    A cancel flags and cancels every waiting state of its run before it answers, but a settle in
    flight may still write a state into the run just after; until that settle's closing write
    cancels it, a claim can take it. Reading the runs after the claim closes that gap: a cancel
    that has answered was written before this read.
    """
    # The runs whose `_id` is known here in one read by primary key; any other by its run id, one
    # lookup each (equality on the unique index: the embedded engine scans `$in` on it).
    projection = {"run_id": 1, "status": 1, "cancelled_at": 1}
    known = {run_id: _run_oids[run_id] for run_id in run_ids if run_id in _run_oids}
    runs = []
    if known:
        found = _runs().find({"_id": {"$in": list(known.values())}}, projection)
        runs = [doc async for doc in found if known.get(doc.get("run_id")) == doc["_id"]]
    for run_id in sorted(run_ids - {doc["run_id"] for doc in runs}):
        _run_oids.pop(run_id, None)
        if (doc := await _runs().find_one({"run_id": run_id}, projection)) is not None:
            remember(run_id, doc["_id"])
            runs.append(doc)
    pending = [doc["_id"] for doc in runs if doc.get("status") == "PENDING"]
    if pending:
        await queries.mark_runs_started(pending, now_ms())
    return {doc["run_id"] for doc in runs if doc.get("cancelled_at") is not None}


def slot_of(state: State) -> tally.Slot:
    return tally.Slot(state.owed_group, state.owed_index)


def spawned_of(state: State) -> list[tally.Registration]:
    return [
        tally.Registration(group=r["group"], open=r["open"], settled=r.get("settled", {}))
        for r in state.spawned
    ]


async def _apply(run_id: str, query: dict[str, Any], update: dict[str, Any]) -> dict[str, Any] | None:
    """One conditional update of a run; the run as it is after it, or None when it matched
    nothing."""
    doc: dict[str, Any] | None = await _runs().find_one_and_update(
        {**_where(run_id), **query}, update, projection=_PROGRESS, return_document=ReturnDocument.AFTER
    )
    oid = _run_oids.get(run_id) if doc is None else None
    if oid is not None and await _runs().find_one({"_id": oid, "run_id": run_id}, {"_id": 1}) is None:
        _run_oids.pop(run_id, None)  # not this store's run any more: ask by run id
        return await _apply(run_id, query, update)
    if doc is not None:
        remember(run_id, doc["_id"])
    return doc


async def _owed(run_id: str) -> dict[str, Any] | None:
    """The run with its `owed` bits (read only when a count matched nothing: not the usual case).
    All of `owed`: the embedded engine ignores a projection of fields inside it."""
    doc: dict[str, Any] | None = await _runs().find_one({"run_id": run_id}, {**_PROGRESS, "owed": 1})
    _run_oids.pop(run_id, None)
    if doc is not None:
        remember(run_id, doc["_id"])
    return doc


async def count_settled(state: State) -> None:
    """Count `state` settled in its status, with the groups of states its settle created; once.

    The common case is one update. When it matches nothing, the run says why: the state's own
    group is not registered yet (a child that settled before its parent's tally, a reopen whose
    count a crash interrupted: registered here, then counted), a group it created is registered
    already (counted without it), or it was counted already (a repeat: nothing to do).
    """
    if not state.owed_group:  # written settled (a fan-out copy): counted when it was created
        return
    slot = slot_of(state)
    creations = spawned_of(state)
    for _ in range(_ATTEMPTS):
        query, update = tally.settle(slot, state.status.value, creations)
        doc = await _apply(state.run_id, query, update)
        if doc is not None:
            await conclude(doc)
            if (drop := tally.drop_cleared(slot, state.owed_registration.get("open", 0))) is not None:
                await _runs().update_one({"_id": doc["_id"], **drop[0]}, drop[1])
            return
        run = await _owed(state.run_id)
        if run is None:
            return  # the run is gone
        owed = run.get("owed", {})
        still = tally.is_owed(owed, slot)
        if still is None:
            await _register_own_group(state)
            continue
        creations = [c for c in creations if c.group not in owed]
        if not still:
            for creation in creations:  # counted without them by an earlier version of this write
                await register(state.run_id, creation)
            await conclude(run)
            return
    raise RuntimeError(f"state {state.id} could not be counted settled in run {state.run_id}")


async def count_settled_together(run_id: str, states: list[State]) -> bool:
    """Count these states of one run settled in one update, if every one of them is still owed
    and none created anything (a cancel's sweep); False if not (count them one by one)."""
    if not states or any(state.spawned or not state.owed_group for state in states):
        return False
    statuses = {state.status.value for state in states}
    if len(statuses) != 1:
        return False
    query, update = tally.settle_many([slot_of(state) for state in states], statuses.pop())
    doc = await _apply(run_id, query, update)
    if doc is None:
        return False
    await conclude(doc)
    return True


async def _register_own_group(state: State) -> None:
    slot = slot_of(state)
    if state.reopened_from is not None:
        query, update = tally.reopen(slot, state.reopened_from)
        doc = await _apply(state.run_id, query, update)
        if doc is not None:
            await conclude(doc)
        return
    details = state.owed_registration or {"open": 1}
    await register(state.run_id, tally.Registration(slot.group, details["open"], details.get("settled", {})))


async def register(run_id: str, registration: tally.Registration) -> None:
    """Count a group of new states (once)."""
    query, update = tally.register(registration)
    doc = await _apply(run_id, query, update)
    if doc is not None:
        await conclude(doc)


async def reopen_state(state: State) -> None:
    """Count a settled state open again, under its own new slot (`state.owed_group`); once."""
    assert state.reopened_from is not None
    query, update = tally.reopen(slot_of(state), state.reopened_from)
    doc = await _apply(state.run_id, query, update)
    if doc is not None:
        await conclude(doc)


def ended_status(doc: dict[str, Any]) -> RunStatus:
    """A run's status once nothing in it is open: CANCELLED if it was cancelled, else FAILED if a
    state failed (or it has none), else SUCCESS."""
    if doc.get("cancelled_at") is not None:
        return RunStatus.CANCELLED
    settled = doc.get("settled") or {}
    failed = any(n for status, n in settled.items() if StateStatus(status) in FAILED)
    return RunStatus.FAILED if failed or not doc.get("created") else RunStatus.SUCCESS


async def conclude(doc: dict[str, Any]) -> None:
    """End the run if nothing in it is open; reopen it if it had ended and something is open.

    An end stored before states were counted that a crash kept from reopening the run (between
    their registration and the reopen) is stale: its counts are not the run's. It is stored
    again, as the end of the reopened run.
    """
    settled = {s: n for s, n in (doc.get("settled") or {}).items() if n}
    if doc.get("open", 0) <= 0 and doc.get("final") is None:
        await _end(doc)
    elif doc.get("open", 0) <= 0 and doc.get("counts") != settled:
        await _end(doc, stale=doc.get("final"))
    elif doc.get("open", 0) > 0 and doc.get("final") is not None:
        await _reopen(doc)


async def _end(doc: dict[str, Any], stale: dict[str, Any] | None = None) -> None:
    status = ended_status(doc)
    settled = {s: n for s, n in (doc.get("settled") or {}).items() if n}
    finished = doc.get("finished_ms") if doc.get("cancelled_at") is not None else None
    fields: dict[str, Any] = {
        "final": upstream_tally({StateStatus(s): n for s, n in settled.items()}),
        "counts": settled,
        "status": status.value,
        "finished_ms": finished or now_ms(),
    }
    result = await _runs().update_one(
        {"_id": doc["_id"], "open": 0, "final": stale, "cancelled_at": doc.get("cancelled_at")},
        # A stale end stored again is the end of the run reopened by what it had not counted.
        {"$set": fields, "$inc": {"revision": 1}} if stale is not None else {"$set": fields},
    )
    if not result.modified_count:
        return  # something opened or cancelled it meanwhile, or another writer ended it
    if doc.get("run_gate"):
        await gates.release_run(doc["run_id"], doc["run_gate"])  # the next waiting run may start
    log.info(
        "run_finished",
        namespace=doc.get("namespace_name"),
        graph=doc.get("graph_name"),
        run_id=doc["run_id"],
        status=status.value,
        states=doc.get("created", 0),
        failed=fields["final"]["errored_count"],
        duration_ms=fields["finished_ms"] - doc.get("created_ms", 0),
    )
    finished = Run.model_construct(
        namespace_name=doc.get("namespace_name", ""),
        graph_name=doc.get("graph_name", ""),
        status=status.value,
        finished_ms=fields["finished_ms"],
        created_ms=doc.get("created_ms", 0),
    )
    metrics.run_finished(finished)


async def _reopen(doc: dict[str, Any]) -> None:
    reopened: dict[str, Any] = {"final": None, "counts": {}}
    if doc.get("cancelled_at") is None:
        reopened |= {"status": RunStatus.RUNNING.value, "finished_ms": None}
    await _runs().update_one(
        {
            "_id": doc["_id"],
            "open": {"$gt": 0},
            "final": {"$ne": None},
            "cancelled_at": doc.get("cancelled_at"),
        },
        {"$set": reopened, "$inc": {"revision": 1}},
    )


async def conclude_run(run_id: str) -> None:
    """`conclude` for a run read now (after a cancel, or by recovery)."""
    doc = await _runs().find_one({"run_id": run_id}, _PROGRESS)
    if doc is not None:
        remember(run_id, doc["_id"])
        await conclude(doc)


async def abandon_seeds(run_id: str, seeds: int) -> None:
    """A run whose root states could never be written: they are counted as never created, once
    (the seeds group is emptied only while all its bits are set), so it ends FAILED with none."""
    query = {f"owed.{SEEDS}.{chunk}": value for chunk, value in tally.group_bits(seeds).items()}
    update = {"$set": {f"owed.{SEEDS}": {}}, "$inc": {"created": -seeds, "open": -seeds}}
    doc = await _apply(run_id, query, update)
    await conclude(doc) if doc is not None else await conclude_run(run_id)
