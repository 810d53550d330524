"""Upgrading stored data at start: runs written before runs stored their progress or their
listing key, waiting states written before claims read queue keys.

Runs stored before decision 0019 have no `sort_key`, `status`, times or counts: the filtered
listing would not show them and the upstream listing would show them PENDING forever; runs
stored before decision 0020 have no progress figures (`created`, `open`, `settled`, `owed`). At
start each such run gets what its states say (`domain/progress.expected_progress`): its status,
its figures (its open states are given slots in a group of their own, so that they are counted
settled when they settle), its `final` figures once it has ended, its times and `sort_key`.

Bounded: runs are read `batch_size` at a time and each run's states through a projection.
Idempotent: each write is conditional on the run still lacking its figures, so a second pass or
a second replica upgrading at the same time changes nothing twice. One document that cannot be
upgraded is logged and skipped: it never keeps the server from starting. Once a pass upgraded
everything, a marker is stored and later starts skip the search.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog
from pymongo import UpdateOne

from state_manager.clock import now_ms
from state_manager.db.documents import Run, State
from state_manager.domain import tally
from state_manager.domain.progress import StateFacts, expected_progress, is_open
from state_manager.domain.queues import queue_fields
from state_manager.domain.status import StateStatus
from state_manager.domain.status import tally as upstream_tally
from state_manager.services import run_status

log = structlog.get_logger(__name__)

_NOT_UPGRADED: dict[str, Any] = {"open": {"$exists": False}}
_FACTS = {"status": 1, "pending_effect": 1, "claimed_ms": 1, "ended_ms": 1, "updated_ms": 1}
_MARKER = {"_id": "runs_progress_v1"}
UPGRADE_GROUP = "u"  # the tally group of the open states of an upgraded run


async def _pages(
    collection: Any, query: dict[str, Any], fields: dict[str, Any] | None, size: int
) -> AsyncIterator[list[dict[str, Any]]]:
    """The documents matching `query` in `_id` order, `size` at a time: each page starts after the
    last `_id` seen, so one that stays in the query (it could not be upgraded) is not read again."""
    after: Any = None
    while True:
        page = query if after is None else {**query, "_id": {"$gt": after}}
        batch = [doc async for doc in collection.find(page, fields).sort("_id", 1).limit(size)]
        if batch:
            yield batch
        if len(batch) < size:
            return
        after = batch[-1]["_id"]


async def _once(marker: dict[str, Any], upgrade: Callable[[], Awaitable[tuple[int, int]]], what: str) -> int:
    """Run one upgrade unless its marker says it was done; store the marker when nothing failed
    (a document that could not be upgraded is logged and left for the next start)."""
    meta = Run.get_motor_collection().database["ServerMeta"]
    if await meta.find_one(marker) is not None:
        return 0
    upgraded, failed = await upgrade()
    if upgraded or failed:
        log.info("upgraded", what=what, upgraded=upgraded, failed=failed)
    if not failed:
        await meta.update_one(marker, {"$set": {"done_ms": now_ms()}}, upsert=True)
    return upgraded


async def upgrade_runs(batch_size: int = 200) -> int:
    """Give every run stored without its progress its status, counts, times and sort key; how
    many runs were upgraded."""

    async def upgrade() -> tuple[int, int]:
        upgraded = failed = 0
        async for batch in _pages(Run.get_motor_collection(), _NOT_UPGRADED, None, batch_size):
            for doc in batch:
                try:
                    upgraded += await _upgrade(doc)
                except Exception:  # one bad run must not keep the server from starting
                    log.exception("run_upgrade_failed", run_id=doc.get("run_id"))
                    failed += 1
        return upgraded, failed

    return await _once(_MARKER, upgrade, "runs")


async def _upgrade(doc: dict[str, Any]) -> int:
    run_id = doc["run_id"]
    states = [s async for s in State.get_motor_collection().find({"run_id": run_id}, _FACTS)]
    facts = [
        StateFacts(
            status=StateStatus(s["status"]),
            owes_effect=s.get("pending_effect") is not None,
            claimed_ms=s.get("claimed_ms") or (None if s["status"] == StateStatus.CREATED else 0),
            ended_ms=s.get("ended_ms"),
        )
        for s in states
    ]
    progress = expected_progress(facts, cancelled=doc.get("cancelled_at") is not None)
    created_ms = doc.get("created_ms") or _epoch_ms(doc.get("created_at"))
    open_ids = [s["_id"] for s, f in zip(states, facts, strict=True) if is_open(f)]
    key = doc.get("sort_key") or run_status.key_bound(created_ms) + run_id
    fields: dict[str, Any] = {
        "created_ms": created_ms,
        "sort_key": key,
        "listing_key": run_status.listing_key(doc["namespace_name"], key),
        "status": progress.status.value,
        "started_ms": doc.get("started_ms")
        or (_started_ms(states, created_ms) if progress.started else None),
        "created": len(states),
        "open": len(open_ids),
        "settled": progress.settled,
        "owed": {UPGRADE_GROUP: tally.group_bits(len(open_ids))},
    }
    slots = [
        UpdateOne(
            {"_id": state_id},
            {
                "$set": {
                    "owed_group": UPGRADE_GROUP,
                    "owed_index": i,
                    "owed_registration": {"open": len(open_ids)},
                }
            },
        )
        for i, state_id in enumerate(open_ids)
    ]
    if slots:
        await State.get_motor_collection().bulk_write(slots, ordered=False)
    if progress.ended:
        fields["counts"] = progress.counts
        fields["final"] = upstream_tally({StateStatus(s): n for s, n in progress.counts.items()})
        fields["finished_ms"] = doc.get("cancelled_at") or _finished_ms(states, created_ms)
    elif doc.get("cancelled_at") is not None:
        fields["finished_ms"] = doc["cancelled_at"]
    where = {"_id": doc["_id"], **_NOT_UPGRADED}
    result = await Run.get_motor_collection().update_one(where, {"$set": fields})
    return int(result.modified_count)


def _epoch_ms(value: Any) -> int:
    return int(value.timestamp() * 1000) if value is not None else now_ms()


def _started_ms(states: list[dict[str, Any]], created_ms: int) -> int:
    claims = [s["claimed_ms"] for s in states if s.get("claimed_ms")]
    return min(claims) if claims else created_ms


def _finished_ms(states: list[dict[str, Any]], created_ms: int) -> int:
    ends = [s.get("ended_ms") or s.get("updated_ms") or 0 for s in states]
    return max([created_ms, *ends])


_LISTING_MARKER = {"_id": "listing_keys_v1"}


async def upgrade_listing_keys(batch_size: int = 1000) -> int:
    """Give every run stored before the listings read `listing_key` its key; how many runs were
    given one. Once (after `upgrade_runs`, which gives the runs it upgrades theirs)."""
    runs = Run.get_motor_collection()
    lacking = {"listing_key": {"$exists": False}}

    async def upgrade() -> tuple[int, int]:
        upgraded = failed = 0
        fields = {"run_id": 1, "namespace_name": 1, "sort_key": 1}
        async for batch in _pages(runs, lacking, fields, batch_size):
            writes = []
            for doc in batch:
                if not doc.get("sort_key") or not isinstance(doc.get("namespace_name"), str):
                    log.error("run_upgrade_failed", run_id=doc.get("run_id"), what="listing key")
                    failed += 1
                    continue
                key = run_status.listing_key(doc["namespace_name"], doc["sort_key"])
                writes.append(UpdateOne({"_id": doc["_id"], **lacking}, {"$set": {"listing_key": key}}))
            if writes:
                upgraded += (await runs.bulk_write(writes, ordered=False)).modified_count
        return upgraded, failed

    return await _once(_LISTING_MARKER, upgrade, "listing keys")


_QUEUE_MARKER = {"_id": "queue_keys_v1"}


async def upgrade_queue_keys(batch_size: int = 1000) -> int:
    """Give every waiting (CREATED) state stored before claims read queue keys its key
    (domain/queues.py), so that it can be claimed; how many states were given one. Once."""
    states = State.get_motor_collection()
    lacking = {
        "status": StateStatus.CREATED.value,
        "ready": {"$exists": False},
        "delayed": {"$exists": False},
    }
    fields = {"namespace_name": 1, "node_name": 1, "enqueue_after": 1}

    async def upgrade() -> tuple[int, int]:
        upgraded = failed = 0
        async for batch in _pages(states, lacking, fields, batch_size):
            now = now_ms()
            writes = []
            for doc in batch:
                try:
                    keys = queue_fields(
                        StateStatus.CREATED,
                        doc["namespace_name"],
                        doc["node_name"],
                        doc.get("enqueue_after", 0),
                        now,
                    )
                except (KeyError, TypeError):
                    log.error("state_upgrade_failed", state_id=str(doc["_id"]), what="queue keys")
                    failed += 1
                    continue
                writes.append(UpdateOne({"_id": doc["_id"], **lacking}, {"$set": keys}))
            if writes:
                upgraded += (await states.bulk_write(writes, ordered=False)).modified_count
        return upgraded, failed

    return await _once(_QUEUE_MARKER, upgrade, "queue keys")
