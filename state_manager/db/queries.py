"""The few atomic MongoDB operations. Every status write goes through `transition`."""

from __future__ import annotations

from typing import Any, TypeVar

from beanie import Document
from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from state_manager.clock import now_ms, utcnow
from state_manager.db.documents import State
from state_manager.domain.status import Event, StateStatus, sources, target

D = TypeVar("D", bound=Document)


async def find_one(model: type[D], query: dict[str, Any]) -> D | None:
    """One document through Motor, validated by the model.

    The hot paths read and write through Motor directly: Beanie's `find_one`/`insert` build a
    pydantic TypeAdapter and run its state tracking on every call, which profiling showed to
    dominate a trigger.
    """
    doc = await model.get_motor_collection().find_one(query)
    return None if doc is None else model.model_validate(doc)


async def insert(document: Document) -> None:
    """Insert a new document through Motor; raises DuplicateKeyError like Beanie does."""
    data = document.model_dump(by_alias=True, exclude={"id", "revision_id"})
    result = await type(document).get_motor_collection().insert_one(data)
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
) -> State | None:
    """Apply `event` to one state if, and only if, its current status allows it.

    The filter names the allowed source statuses (and the namespace when given), so two racing
    writers cannot both succeed. Returns the updated state, or None when nothing matched.
    """
    query: dict[str, Any] = {"_id": state_id, "status": {"$in": [s.value for s in sources(event)]}}
    if namespace is not None:
        query["namespace_name"] = namespace
    if extra_filter:
        query.update(extra_filter)
    update = stamp({**(fields or {}), "status": target(event).value})
    doc = await _states().find_one_and_update(query, {"$set": update}, return_document=ReturnDocument.AFTER)
    return None if doc is None else State.model_validate(doc)


async def set_fields(state_id: ObjectId, fields: dict[str, Any], expect: dict[str, Any]) -> bool:
    """Conditionally set non-status fields; `expect` is part of the filter. True if it matched."""
    result = await _states().update_one({"_id": state_id, **expect}, {"$set": stamp(fields)})
    return bool(result.matched_count)


async def insert_once(state: State) -> bool:
    """Insert a state whose `spawn_key` is deterministic; False if it already exists."""
    now = now_ms()
    state.updated_ms = state.updated_ms or now
    try:
        await insert(state)
    except DuplicateKeyError:
        return False
    return True


async def claim_one(namespace: str, nodes: list[str], lease_ms: int) -> State | None:
    """Atomically move the oldest due CREATED state of these nodes to QUEUED with a lease."""
    now = now_ms()
    doc = await _states().find_one_and_update(
        {
            "namespace_name": namespace,
            "status": StateStatus.CREATED.value,
            "node_name": {"$in": nodes},
            "enqueue_after": {"$lte": now},
        },
        {"$set": stamp({"status": StateStatus.QUEUED.value, "lease_expires_at": now + lease_ms})},
        sort=[("enqueue_after", 1), ("_id", 1)],
        return_document=ReturnDocument.AFTER,
    )
    return None if doc is None else State.model_validate(doc)


async def find_state(state_id: ObjectId) -> State | None:
    doc = await _states().find_one({"_id": state_id})
    return None if doc is None else State.model_validate(doc)


async def find_states(query: dict[str, Any], sort: list[tuple[str, int]] | None = None) -> list[State]:
    cursor = _states().find(query)
    if sort:
        cursor = cursor.sort(sort)
    return [State.model_validate(doc) async for doc in cursor]


async def statuses(query: dict[str, Any]) -> list[dict[str, Any]]:
    """Only the fields needed to count or judge states."""
    cursor = _states().find(query, {"status": 1, "pending_effect": 1, "run_id": 1, "identifier": 1})
    return [doc async for doc in cursor]
