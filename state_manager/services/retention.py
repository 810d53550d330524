"""Retention of finished runs (RUN_RETENTION): a pass deletes the runs that ended longer ago than
the setting, with their states and their idempotency records, so the store stops growing.

What may go is decided in `domain/retention.py` (ended, nothing open, no fork still being written
from it). A pass, every RETENTION_INTERVAL:

1. takes the retention lease (a `Lock` document: a conditional update, free or expired -> held
   by this pass until `now + LEASE_MS`, renewed with each batch), so one replica at a time
   deletes; the others skip;
2. finishes what a pass that stopped half-way left (the lease's `work`: runs deleted whose
   states may not be);
3. reads the runs that ended before the cutoff, oldest end first, `batch_size` at a time (a
   range on the single-field `finished_ms` index, sorted by it, with a limit: the same cost
   however many other runs are stored), notes the batch in the lease, and deletes each run by
   `_id` under the condition that it still has ended before the cutoff (a run that reopened
   meanwhile stays), then its states (found on the (run_id, status) index, deleted by `_id`
   in chunks) and its idempotency records; pauses; and goes on until no old run is left or
   the pass has taken `PASS_SECONDS`;
4. gives the lease back, logs `runs_purged` and counts the runs in
   `exosphere_runs_purged_total`.

Safe against another replica and against a crash at any point: every delete is conditional or
idempotent, and a run is deleted before its states, with the batch noted first, so a pass that
stops between the two leaves its run ids for the next holder to finish.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

import structlog
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from state_manager import metrics
from state_manager.clock import now_ms
from state_manager.db import queries
from state_manager.db.documents import IdempotencyKey, Lock, Run, State
from state_manager.domain import retention
from state_manager.services.context import AppContext

log = structlog.get_logger(__name__)

LOCK = "retention"
BATCH_RUNS = 100  # runs read and deleted at a time
PAUSE_SECONDS = 0.1  # between batches, so a long pass leaves the store to the requests
PASS_SECONDS = 120.0  # a pass starts no batch after this; the rest waits for the next pass
# The lease outlives a pass by a margin (a batch under way when the time is up); it is renewed
# with every batch and given back at the end.
LEASE_MS = int((PASS_SECONDS + 60) * 1000)
STATES_PER_DELETE = 1000  # `_id`s in one delete of a run's states


@dataclass
class PurgeReport:
    """What one pass deleted."""

    runs: int = 0
    states: int = 0
    idempotency_keys: int = 0
    kept: int = 0  # old runs that stay: a fork of them is being written, or they reopened
    resumed: int = 0  # runs a stopped pass had deleted whose states this pass deleted
    batches: int = 0
    finished: bool = True  # False: stopped by PASS_SECONDS or a lost lease; the next pass goes on


async def purge_once(
    ctx: AppContext,
    *,
    batch_size: int = BATCH_RUNS,
    pause: float = PAUSE_SECONDS,
    budget: float = PASS_SECONDS,
) -> PurgeReport | None:
    """One retention pass; None when RUN_RETENTION is unset or another pass holds the lease."""
    seconds = ctx.settings.run_retention
    if seconds is None:
        return None
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:12]}"
    lease = await _take_lease(holder)
    if lease is None:
        log.debug("retention_pass_skipped", reason="another pass holds the lease")
        return None
    started = time.monotonic()
    cutoff = retention.cutoff_ms(now_ms(), seconds)
    report = PurgeReport()
    completed = False  # every batch begun was finished: nothing is left for the next holder
    try:
        report.resumed, report.states, report.idempotency_keys = await _finish(lease.get("work") or [])
        key_seconds = ctx.settings.idempotency_key_seconds
        await _pass(holder, cutoff, key_seconds, report, batch_size, pause, started + budget)
        completed = True
    finally:
        await _give_back(holder, done=completed)
    log.info(
        "runs_purged",
        runs=report.runs,
        states=report.states,
        idempotency_keys=report.idempotency_keys,
        kept=report.kept,
        resumed=report.resumed,
        batches=report.batches,
        finished=report.finished,
        retention_seconds=seconds,
        cutoff_ms=cutoff,
        duration_ms=round((time.monotonic() - started) * 1000),
    )
    return report


async def _pass(
    holder: str,
    cutoff: int,
    key_seconds: float,
    report: PurgeReport,
    batch_size: int,
    pause: float,
    deadline: float,
) -> None:
    walk = retention.Walk()
    while True:
        if time.monotonic() >= deadline:
            report.finished = False
            return
        limit = walk.limit(batch_size)
        page = await old_runs(walk.query(cutoff), limit)
        candidates = walk.unseen(page)
        if candidates:
            report.batches += 1
            kept = await _purge_batch(holder, cutoff, key_seconds, candidates, report)
            if kept is None:  # the lease is no longer this pass's
                report.finished = False
                return
            walk.advance(page, kept)
        if len(page) < limit:
            return
        await asyncio.sleep(pause)


async def old_runs(query: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """A page of runs that ended before the cutoff, oldest end first (`query` from
    `domain.retention.Walk`: a range on the single-field `finished_ms` index, sorted by it, with
    a limit, so it costs the same however many other runs are stored)."""
    found = Run.get_motor_collection().find(query, dict.fromkeys(retention.CANDIDATE_FIELDS, 1))
    return [doc async for doc in found.sort("finished_ms", 1).limit(limit)]


async def _purge_batch(
    holder: str, cutoff: int, key_seconds: float, candidates: list[Mapping[str, Any]], report: PurgeReport
) -> set[Any] | None:
    """Delete the candidates that may go; returns the `_id`s of those that stay (None: the lease
    was lost before anything was deleted)."""
    kept = {doc["_id"] for doc in candidates if not retention.purgeable(doc, cutoff)}
    chosen = [doc for doc in candidates if doc["_id"] not in kept]
    if not await _note_work(holder, [doc["run_id"] for doc in chosen]):
        return None
    keyed = []  # purged runs whose idempotency record may still be stored
    for doc in chosen:
        try:
            states = await purge_run(doc, cutoff)
        except Exception:  # one run that cannot go does not stop the others
            log.exception("run_purge_failed", run_id=doc.get("run_id"))
            states = None
        if states is None:
            kept.add(doc["_id"])
            continue
        report.runs += 1
        report.states += states
        if retention.may_hold_key(doc, now_ms(), key_seconds):
            keyed.append(doc["run_id"])
    report.idempotency_keys += await _delete_keys(keyed)
    report.kept += len(kept)
    return kept


async def purge_run(doc: Mapping[str, Any], cutoff: int) -> int | None:
    """Delete a run read earlier as `doc` (its `_id`, `run_id`, namespace and graph), then its
    states; returns how many states, or None when the run stays. (Its idempotency record goes
    with its batch's: `_delete_keys`.)

    It stays while a fork of it is being written, and unless it still ended before `cutoff`:
    that is the delete's own condition, so a run that reopened since it was read stays.
    """
    runs = Run.get_motor_collection()
    forks = runs.find({"fork_of": doc["run_id"]}, {"seeded": 1})
    if retention.needs_original([fork async for fork in forks]):
        return None
    deleted = await runs.delete_one({"_id": doc["_id"], **retention.ended_before(cutoff)})
    if not deleted.deleted_count:
        return None
    metrics.run_purged(doc["namespace_name"], doc["graph_name"])
    return await _delete_states(doc["run_id"])


async def _delete_states(run_id: str) -> int:
    """Delete every state of a run, found on the (run_id, status) index and deleted by `_id`
    (on the embedded engine a delete by `run_id` alone would look at every state)."""
    found = await queries.run_states_where(run_id, {}, fields=("_id",))
    ids = [doc["_id"] for doc in found]
    deleted = 0
    for start in range(0, len(ids), STATES_PER_DELETE):
        chunk = ids[start : start + STATES_PER_DELETE]
        deleted += (await State.get_motor_collection().delete_many({"_id": {"$in": chunk}})).deleted_count
    return deleted


async def _delete_keys(run_ids: list[str]) -> int:
    """Delete the idempotency records of these runs: a repeat of their trigger starts a new run.

    One read for a whole batch: on the embedded engine every read of this collection (it has a
    TTL index) looks at each record, however it is indexed; the records live one day by default.
    """
    if not run_ids:
        return 0
    keys = IdempotencyKey.get_motor_collection()
    ids = [doc["_id"] async for doc in keys.find({"run_id": {"$in": run_ids}}, {"_id": 1})]
    if not ids:
        return 0
    return int((await keys.delete_many({"_id": {"$in": ids}})).deleted_count)


async def _finish(run_ids: list[str]) -> tuple[int, int, int]:
    """Finish the batch a pass that stopped half-way (a crash, a failure) was deleting: the
    states and idempotency records of its runs that are gone (a run still stored was not
    deleted, and is judged again). Returns the runs finished, states and records deleted."""
    gone = [run_id for run_id in run_ids if await queries.find_one(Run, {"run_id": run_id}) is None]
    states = 0
    for run_id in gone:
        states += await _delete_states(run_id)
    keys = await _delete_keys(gone)
    if gone:
        log.info("runs_purge_resumed", runs=len(gone), states=states, idempotency_keys=keys)
    return len(gone), states, keys


# ---------------------------------------------------------------- the lease


async def _take_lease(holder: str) -> dict[str, Any] | None:
    """The lease document, now held by `holder`; None when another holder's has not expired."""
    now = now_ms()
    held = {"holder": holder, "expires_ms": now + LEASE_MS, "taken_ms": now}
    locks = Lock.get_motor_collection()
    doc: dict[str, Any] | None = await locks.find_one_and_update(
        {"_id": LOCK, "expires_ms": {"$lt": now}}, {"$set": held}, return_document=ReturnDocument.AFTER
    )
    if doc is not None:
        return doc
    try:  # the first pass ever: the document does not exist yet (or another holder's does)
        await locks.insert_one({"_id": LOCK, **held, "work": []})
    except DuplicateKeyError:
        return None
    return {"_id": LOCK, **held, "work": []}


async def _note_work(holder: str, run_ids: list[str]) -> bool:
    """Note the batch about to be deleted, and renew the lease, if it is still `holder`'s."""
    now = now_ms()
    noted = await Lock.get_motor_collection().update_one(
        {"_id": LOCK, "holder": holder, "expires_ms": {"$gt": now}},
        {"$set": {"work": run_ids, "expires_ms": now + LEASE_MS}},
    )
    return bool(noted.matched_count)


async def _give_back(holder: str, *, done: bool) -> None:
    """Free the lease; its `work` is cleared only when the last batch was finished."""
    fields: dict[str, Any] = {"holder": None, "expires_ms": 0}
    if done:
        fields["work"] = []
    await Lock.get_motor_collection().update_one({"_id": LOCK, "holder": holder}, {"$set": fields})
