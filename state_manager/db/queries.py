"""The few atomic MongoDB operations. Every status write goes through `transition`."""

from __future__ import annotations

from typing import Any, TypeVar
from uuid import uuid4

import bson
from beanie import Document
from bson import ObjectId
from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DocumentTooLarge, DuplicateKeyError, OperationFailure

from state_manager.clock import now_ms, utcnow
from state_manager.db.documents import SET_ONLY_WHEN_USED, Run, State
from state_manager.domain.effects import Effect, pending_after
from state_manager.domain.queues import (
    OUT_OF_QUEUE,
    due_at,
    is_due,
    queue_fields,
    queue_key,
    ready_key,
    ready_range,
)
from state_manager.domain.status import ENDS_ATTEMPT, UNSETTLED, Event, StateStatus, sources, target
from state_manager.errors import TooLarge

D = TypeVar("D", bound=Document)


async def find_one(model: type[D], query: dict[str, Any]) -> D | None:
    """One document through Motor, validated by the model.

    The hot paths read and write through Motor directly: Beanie's `find_one`/`insert` build a
    pydantic TypeAdapter and run its state tracking on every call, which profiling showed to
    dominate a trigger.
    """
    doc = await model.get_motor_collection().find_one(query)
    return None if doc is None else model.model_validate(doc)


# MongoDB's error codes for a document over its size limit (BSONObjectTooLarge and the
# "resulting document after update is larger than" family).
_TOO_LARGE_CODES = frozenset({10334, 17419, 17420})
_DUPLICATE_KEY = 11000


def encoded_size(document: dict[str, Any]) -> int:
    """Bytes the document takes in the store (BSON)."""
    return len(bson.encode(document))


def _refuse_if_too_large(exc: DocumentTooLarge | OperationFailure) -> None:
    """Raise TooLarge for the store's size refusals; return for any other failure."""
    if isinstance(exc, DocumentTooLarge) or exc.code in _TOO_LARGE_CODES:
        raise TooLarge(f"The store refused a document over its size limit: {str(exc)[:300]}") from exc


def _stored(document: Document, exclude: set[str]) -> dict[str, Any]:
    """The fields of a document as stored: a state's anchor fields only when set (most states
    are no join's anchor, and every field is written, read and rewritten with the state)."""
    data: dict[str, Any] = document.model_dump(by_alias=True, exclude=exclude)
    if isinstance(document, State):
        for name in SET_ONLY_WHEN_USED:
            if not data.get(name):
                data.pop(name, None)
    return data


async def insert(document: Document) -> None:
    """Insert a new document through Motor; raises DuplicateKeyError like Beanie does."""
    data = _stored(document, {"id", "revision_id"})
    try:
        result = await type(document).get_motor_collection().insert_one(data)
    except (DocumentTooLarge, OperationFailure) as exc:
        _refuse_if_too_large(exc)
        raise
    document.id = result.inserted_id


def _states() -> Any:
    return State.get_motor_collection()


def stamp(fields: dict[str, Any]) -> dict[str, Any]:
    """Add the update timestamps every write carries."""
    return {**fields, "updated_at": utcnow(), "updated_ms": now_ms()}


async def transition(
    state_id: ObjectId,
    event: Event,
    fields: dict[str, Any] | None = None,
    *,
    namespace: str | None = None,
    extra_filter: dict[str, Any] | None = None,
    claim: str | None = None,
) -> State | None:
    """Apply `event` to one state if, and only if, its current status allows it.

    The filter names the allowed source statuses (and the namespace, and the claim token of the
    caller's claim, when given), so two racing writers cannot both succeed and a caller whose
    claim was superseded changes nothing. Returns the updated state, or None when nothing matched.

    Raises:
        TooLarge: The store refused the write: the document would be over its size limit.
    """
    query: dict[str, Any] = {"_id": state_id, "status": {"$in": [s.value for s in sources(event)]}}
    if StateStatus.CREATED in sources(event) and target(event) != StateStatus.CREATED:
        fields = {**OUT_OF_QUEUE, **(fields or {})}
    if namespace is not None:
        query["namespace_name"] = namespace
    if claim is not None:
        query["claim_token"] = claim
    if extra_filter:
        query.update(extra_filter)
    # The effect this write owes comes from the effects table unless the caller says otherwise.
    update = stamp({"pending_effect": pending_after(event), **(fields or {}), "status": target(event).value})
    if event in ENDS_ATTEMPT:
        update["ended_ms"] = update["updated_ms"]
    try:
        doc = await _states().find_one_and_update(
            query, {"$set": update}, return_document=ReturnDocument.AFTER
        )
    except (DocumentTooLarge, OperationFailure) as exc:
        _refuse_if_too_large(exc)
        raise
    return None if doc is None else State.model_validate(doc)


async def set_fields(state_id: ObjectId, fields: dict[str, Any], expect: dict[str, Any]) -> bool:
    """Conditionally set non-status fields; `expect` is part of the filter. True if it matched."""
    result = await _states().update_one({"_id": state_id, **expect}, {"$set": stamp(fields)})
    return bool(result.matched_count)


def _queued(state: State, now: int) -> None:
    """Give a new state its queue key (domain/queues.py)."""
    keys = queue_fields(
        state.status, state.namespace_name, state.node_name, state.enqueue_after, now, state.priority_ms
    )  # a new state: nothing of a node's own wait
    state.ready, state.delayed, state.parked = keys["ready"], keys["delayed"], None


async def insert_once(state: State) -> bool:
    """Insert a state whose `spawn_key` is deterministic; False if it already exists."""
    now = now_ms()
    state.updated_ms = state.updated_ms or now
    _queued(state, now)
    try:
        await insert(state)
    except DuplicateKeyError:
        return False
    return True


async def insert_many_once(states: list[State]) -> list[State]:
    """Insert states whose `spawn_key`s (and, where set, ids) are deterministic, in one unordered
    bulk insert; the ones that already exist are skipped, so a second run inserts nothing.
    Each state this call inserted gets its id; a skipped one keeps the id it had (maybe none).
    Returns the states this call inserted."""
    if not states:
        return []
    now = now_ms()
    docs = []
    for state in states:
        state.updated_ms = state.updated_ms or now
        _queued(state, now)
        doc = _stored(state, {"revision_id"} if state.id else {"id", "revision_id"})
        docs.append(doc)
    skipped: set[int] = set()
    try:
        await _states().insert_many(docs, ordered=False)  # adds each new document's _id to it
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(error.get("code") in _TOO_LARGE_CODES for error in errors):
            raise TooLarge("The store refused a document over its size limit") from exc
        if any(error.get("code") != _DUPLICATE_KEY for error in errors) or not errors:
            raise
        skipped = {int(error["index"]) for error in errors}
    except DocumentTooLarge as exc:
        _refuse_if_too_large(exc)
        raise
    for index, (state, doc) in enumerate(zip(states, docs, strict=True)):
        if index not in skipped:
            state.id = doc["_id"]
    return [state for index, state in enumerate(states) if index not in skipped]


def _oldest_due_first(doc: dict[str, Any]) -> tuple[int, ObjectId]:
    return due_at(doc.get("enqueue_after", 0), doc.get("priority_ms", 0)), doc["_id"]


async def _update_each(
    collection: Any, ids: list[Any], condition: dict[str, Any], update: dict[str, Any] | list[dict[str, Any]]
) -> int:
    """Apply `update` (one for all, or one per id) to each document of `ids` that still matches
    `condition`, in one command; how many changed.

    One conditional update by `_id` each, not one update over `_id $in`: the embedded engine
    looks up an `_id` by its primary key, but scans for `$in` with another condition.
    """
    updates = update if isinstance(update, list) else [update] * len(ids)
    writes = [UpdateOne({"_id": oid, **condition}, change) for oid, change in zip(ids, updates, strict=True)]
    if not writes:
        return 0
    return int((await collection.bulk_write(writes, ordered=False)).modified_count)


async def _by_ids(collection: Any, ids: list[Any]) -> list[dict[str, Any]]:
    """The documents of `ids` (a primary-key lookup each; conditions are checked by the caller)."""
    return [doc async for doc in collection.find({"_id": {"$in": ids}})]


def _claimed(now: int, lease_ms: int, token: str, timeout_ms: int | None) -> dict[str, Any]:
    fields = {
        "status": StateStatus.QUEUED.value,
        "lease_expires_at": now + lease_ms,
        "claim_token": token,
        "claimed_ms": now,
        "tuned_lease_ms": None,
        "deadline_ms": now + timeout_ms if timeout_ms else None,
        **OUT_OF_QUEUE,
    }
    return {"$set": stamp(fields)}


def _keys(namespace: str, nodes: list[str]) -> list[str]:
    return [queue_key(namespace, node) for node in nodes]


async def promote(namespace: str, nodes: list[str]) -> int:
    """Move these nodes' delayed states whose time has come to `ready`; how many moved. One read
    of each node's delayed states (the `delayed` index) and one write per node with some due."""
    now = now_ms()
    due: dict[str, list[dict[str, Any]]] = {}
    for key, node in zip(_keys(namespace, nodes), nodes, strict=True):  # one equality lookup per node
        fields = {"enqueue_after": 1, "priority_ms": 1, "not_before_ms": 1}
        async for doc in _states().find({"delayed": key}, fields):
            if is_due(doc.get("enqueue_after", 0), doc.get("priority_ms", 0), doc.get("not_before_ms"), now):
                ready = ready_key(namespace, node, doc.get("enqueue_after", 0), doc.get("priority_ms", 0))
                due.setdefault(key, []).append({"_id": doc["_id"], "ready": ready})
    moved = 0
    for key, docs in due.items():
        condition = {"delayed": key, "status": StateStatus.CREATED.value}
        updates = [{"$set": {"ready": doc["ready"], "delayed": None}} for doc in docs]
        moved += await _update_each(_states(), [doc["_id"] for doc in docs], condition, updates)
    return moved


async def due(namespace: str, nodes: list[str], limit: int) -> list[dict[str, Any]]:
    """Up to `limit` due CREATED states of these nodes, the first due (less its run's priority)
    first: a range of one indexed field (`ready`) per node, read in its order, so the cost does
    not grow with the store."""
    found: list[dict[str, Any]] = []
    for node in nodes:  # one range per node (the engine scans `$in`)
        cursor = _states().find({"ready": ready_range(namespace, node)}).sort("ready", 1)
        found += [doc async for doc in cursor.limit(limit - len(found))]
        if len(found) >= limit:
            break
    return sorted(found, key=_oldest_due_first)


async def claim_due(due: list[dict[str, Any]], lease_ms: int, token: str) -> list[State]:
    """Atomically move these states (read by `due`) to QUEUED, each with a lease, its deadline
    and the claim's token, those still CREATED: one conditional update by id each (one command).
    Only when another replica took some of them in between, read them back and keep the ones
    that carry this claim's token, so nothing is claimed twice. The first due are first."""
    if not due:
        return []
    now = now_ms()
    ids = [doc["_id"] for doc in due]
    # Each with its own deadline when its node has a timeout, in the claim itself: no attempt
    # ever runs without the clock that ends it.
    updates = [_claimed(now, lease_ms, token, doc.get("timeout_ms")) for doc in due]
    changed = await _update_each(_states(), ids, {"status": StateStatus.CREATED.value}, updates)
    if changed == len(ids):  # all still CREATED when claimed: what was read, claimed
        pairs = zip(due, updates, strict=True)
        return [State.model_validate({**doc, **update["$set"]}) for doc, update in pairs]
    # another replica took some meanwhile: read back the ones this claim got
    mine = [doc for doc in await _by_ids(_states(), ids) if doc.get("claim_token") == token]
    return [State.model_validate(doc) for doc in sorted(mine, key=_oldest_due_first)]


async def park(parked: list[tuple[dict[str, Any], str]]) -> int:
    """Move due states out of `ready` into `parked` (doc, its `parked` value), each only while it
    is still CREATED and due as it was read; how many moved."""
    writes = [
        UpdateOne(
            {"_id": doc["_id"], "status": StateStatus.CREATED.value, "ready": doc.get("ready")},
            {"$set": {"ready": None, "parked": value}},
        )
        for doc, value in parked
    ]
    if not writes:
        return 0
    return int((await _states().bulk_write(writes, ordered=False)).modified_count)


async def parked_first(condition: dict[str, str], limit: int) -> list[dict[str, Any]]:
    """The first `limit` states parked in this range of `parked`, in its order."""
    fields = {"namespace_name": 1, "node_name": 1, "enqueue_after": 1, "priority_ms": 1, "parked": 1}
    cursor = _states().find({"parked": condition}, fields).sort("parked", 1).limit(limit)
    return [doc async for doc in cursor]


def _back_in_queue(doc: dict[str, Any]) -> dict[str, Any]:
    ready = ready_key(
        doc["namespace_name"], doc["node_name"], doc.get("enqueue_after", 0), doc.get("priority_ms", 0)
    )
    return {"$set": {"parked": None, "ready": ready}}


async def unpark(docs: list[dict[str, Any]]) -> int:
    """Move parked states (read by `parked_first`) back to `ready`, each only while it is still
    parked where it was read; how many moved."""
    writes = [
        UpdateOne(
            {"_id": doc["_id"], "parked": doc["parked"], "status": StateStatus.CREATED.value},
            _back_in_queue(doc),
        )
        for doc in docs
    ]
    if not writes:
        return 0
    return int((await _states().bulk_write(writes, ordered=False)).modified_count)


async def find_state(state_id: ObjectId) -> State | None:
    doc = await _states().find_one({"_id": state_id})
    return None if doc is None else State.model_validate(doc)


async def find_states(
    query: dict[str, Any], sort: list[tuple[str, int]] | None = None, limit: int = 0
) -> list[State]:
    cursor = _states().find(query)
    if sort:
        cursor = cursor.sort(sort)
    if limit:
        cursor = cursor.limit(limit)
    return [State.model_validate(doc) async for doc in cursor]


async def take_stale(state_id: ObjectId, effect: str, stale_before: int) -> bool:
    """Take over a pending effect nobody has touched since `stale_before` (the recovery pass):
    one replica wins, and the owner of a settle still in progress keeps it by touching it."""
    result = await _states().update_one(
        {"_id": state_id, "pending_effect": effect, "updated_ms": {"$lt": stale_before}},
        {"$set": {"updated_ms": now_ms()}},
    )
    return bool(result.modified_count)


async def touch(state_id: ObjectId, effect: str) -> None:
    """Show that the settle of this pending effect is still in progress."""
    query = {"_id": state_id, "pending_effect": effect}
    await _states().update_one(query, {"$set": {"updated_ms": now_ms()}})


async def count_failure(state_id: ObjectId, pending_effect: str) -> int | None:
    """Count one failed attempt at a state's pending effect; the new count, or None if the
    effect is no longer pending (someone else completed it)."""
    doc = await _states().find_one_and_update(
        {"_id": state_id, "pending_effect": pending_effect},
        {"$inc": {"effect_failures": 1}},
        projection={"effect_failures": 1},
        return_document=ReturnDocument.AFTER,
    )
    return None if doc is None else int(doc["effect_failures"])


async def exists(query: dict[str, Any]) -> bool:
    """Whether any state matches (reads at most one id)."""
    return await _states().find_one(query, {"_id": 1}) is not None


async def any_matches(query: dict[str, Any]) -> bool:
    """`exists` for a plain query (equality and `$in` on indexed fields), as an aggregation: the
    same work for MongoDB, but the embedded engine runs such a `$match` + `$limit` as SQL on its
    indexes, while its `find` decodes every candidate document (~1 ms against ~6 ms with 3,000
    states stored, growing with the collection). Not for queries on nested or missing fields,
    which the engine's aggregation evaluates document by document."""
    pipeline = [{"$match": query}, {"$limit": 1}, {"$project": {"_id": 1}}]
    async for _ in _states().aggregate(pipeline):
        return True
    return False


async def run_states_where(
    run_id: str, match: dict[str, Any], *, limit: int = 0, fields: tuple[str, ...] | None = None
) -> list[dict[str, Any]]:
    """A run's states matching `match` on plain fields (equality, `$in`), as documents (only
    `fields` when given), through an aggregation: the embedded engine runs its `$match` as SQL
    on the (run_id, status) index, where a `find` with a condition on a nested field (a state's
    `parents`) is evaluated document by document across the store."""
    pipeline: list[dict[str, Any]] = [{"$match": {"run_id": run_id, **match}}]
    if limit:
        pipeline.append({"$limit": limit})
    if fields is not None:
        pipeline.append({"$project": dict.fromkeys(fields, 1)})
    return [doc async for doc in _states().aggregate(pipeline)]


async def statuses(query: dict[str, Any]) -> list[dict[str, Any]]:
    """Only the fields needed to count or judge states."""
    cursor = _states().find(query, {"status": 1, "pending_effect": 1, "run_id": 1, "identifier": 1})
    return [doc async for doc in cursor]


# Counting by status: one `$group` on a plain field per status present, rather than one group
# on a compound key. MongoDB does either in the server; the embedded engine runs a group on a
# plain field as SQL but evaluates a compound key document by document, which made a listing
# of a run of 2,000 states take ~65 ms instead of ~5.


async def distinct_values(model: type[Document], match: dict[str, Any], field: str) -> list[Any]:
    """The values of `field` among the documents matching `match`. (Not `distinct`: the embedded
    engine's `distinct` ignores operator conditions such as `$in` in its filter.)"""
    pipeline = [{"$match": match}, {"$group": {"_id": f"${field}"}}]
    return [row["_id"] async for row in model.get_motor_collection().aggregate(pipeline)]


async def _count_by(match: dict[str, Any], field: str) -> dict[StateStatus, dict[str, int]]:
    """For each status among the states matching `match`: how many have each value of `field`."""
    return {
        StateStatus(status): await _group_count({**match, "status": status}, field)
        for status in await distinct_values(State, match, "status")
    }


async def identifier_tallies(run_id: str) -> dict[str, dict[StateStatus, int]]:
    """For each identifier of the run: how many of its states are in each status."""
    tallies: dict[str, dict[StateStatus, int]] = {}
    for status, per_identifier in (await _count_by({"run_id": run_id}, "identifier")).items():
        for identifier, n in per_identifier.items():
            tallies.setdefault(identifier, {})[status] = n
    return tallies


async def mark_runs_started(run_oids: list[ObjectId], when: int) -> None:
    """PENDING -> RUNNING for these runs, by their `_id` (a state of each was just claimed)."""
    started = {"$set": {"status": "RUNNING", "started_ms": when}}
    await _update_each(Run.get_motor_collection(), run_oids, {"status": "PENDING"}, started)


async def open_state_counts(run_id: str) -> dict[StateStatus, int]:
    """How many of one run's states are in each status that is not settled (for a run's page):
    one aggregation on the (run_id, status) index, grouped on a plain field."""
    open_statuses = [status.value for status in UNSETTLED]
    found = await _group_count({"run_id": run_id, "status": {"$in": open_statuses}}, "status")
    return {StateStatus(status): n for status, n in found.items() if n}


async def _group_count(match: dict[str, Any], field: str) -> dict[str, int]:
    pipeline = [{"$match": match}, {"$group": {"_id": f"${field}", "n": {"$sum": 1}}}]
    return {str(row["_id"]): int(row["n"]) async for row in _states().aggregate(pipeline)}


CANCELLED_FIELDS = {
    **OUT_OF_QUEUE,
    "status": StateStatus.CANCELLED.value,
    "lease_expires_at": None,
    "pending_effect": Effect.TALLY.value,  # counted settled in its run next
    "run_cancelled": True,
}
_WAITING = [StateStatus.CREATED.value, StateStatus.QUEUED.value]


async def cancel_waiting(query: dict[str, Any], error: str) -> list[State]:
    """Cancel the CREATED and QUEUED states matching `query` as part of their run's cancel, and
    return them (each still owing its tally). Each is flagged `run_cancelled`, also one written
    after the cancel's own sweep (a settle in flight undoing its writes), so that nothing
    retries or re-runs it and its worker is told the run was cancelled (409)."""
    waiting = {**query, "status": {"$in": _WAITING}}
    ids = [doc["_id"] async for doc in _states().find(waiting, {"_id": 1})]
    if not ids:
        return []
    sweep = uuid4().hex
    fields = stamp({**CANCELLED_FIELDS, "error": error, "cancel_sweep": sweep})
    fields["ended_ms"] = fields["updated_ms"]
    await _update_each(_states(), ids, {"status": {"$in": _WAITING}}, {"$set": fields})
    # Those this sweep cancelled: the ones with its mark (another writer may have moved some).
    found = await _by_ids(_states(), ids)
    return [State.model_validate(doc) for doc in found if doc.get("cancel_sweep") == sweep]


async def mark_run_cancelled(run_id: str) -> None:
    await _states().update_many({"run_id": run_id}, {"$set": {"run_cancelled": True}})


async def next_join_generation(anchor_id: ObjectId, join_identifier: str, superseded: int) -> None:
    """Move the anchor's generation of a join from `superseded` to the next; a repeat (the same
    generation superseded again, or recovery) changes nothing."""
    field = f"join_generations.{join_identifier}"
    current: dict[str, Any] = {field: superseded} if superseded else {field: {"$in": [None, 0]}}
    await _states().update_one({"_id": anchor_id, **current}, {"$set": {field: superseded + 1}})


async def finish_effects(state_ids: list[ObjectId], effect: str) -> None:
    """`finish_effect` to nothing for several states at once (their last stage was done together)."""
    closed = {"$set": stamp({"pending_effect": None})}
    await _update_each(_states(), state_ids, {"pending_effect": effect}, closed)


async def finish_effect(
    state_id: ObjectId, effect: str, then: str | None, spawned: list[dict[str, Any]] | None = None
) -> State | None:
    """The closing write of an effect: move `pending_effect` on (recording, with `spawned`, the
    groups of states it created, for its tally), and return the state as it is now (so the
    caller sees a cancel that happened meanwhile). None if it had moved on already."""
    fields: dict[str, Any] = {"pending_effect": then}
    if spawned is not None:
        fields["spawned"] = spawned
    doc = await _states().find_one_and_update(
        {"_id": state_id, "pending_effect": effect},
        {"$set": stamp(fields)},
        return_document=ReturnDocument.AFTER,
    )
    return None if doc is None else State.model_validate(doc)
