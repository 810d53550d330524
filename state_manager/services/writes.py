"""The state writes of the services, with what they report: each status write and each state
created is counted in the metrics and logged here, by the service layer (`db/` records nothing
itself, so the data layer depends on no service)."""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from state_manager import metrics
from state_manager.db import queries
from state_manager.db.documents import State
from state_manager.domain.status import Event, StateStatus, sources, target
from state_manager.services import gates
from state_manager.services.context import AppContext


async def transition(
    state_id: ObjectId,
    event: Event,
    fields: dict[str, Any] | None = None,
    *,
    namespace: str | None = None,
    extra_filter: dict[str, Any] | None = None,
    claim: str | None = None,
    ctx: AppContext | None = None,
) -> State | None:
    """`queries.transition`, reported when it happened. A write that ends a claimed attempt
    gives back the concurrency slots it held (services/gates.py; `ctx` wakes this process's
    polls for what the slot lets in)."""
    updated = await queries.transition(
        state_id, event, fields, namespace=namespace, extra_filter=extra_filter, claim=claim
    )
    if updated is None:
        return None
    if updated.gates and StateStatus.QUEUED in sources(event) and target(event) != StateStatus.QUEUED:
        await gates.release(ctx, updated)
    return metrics.transitioned(event, updated)


async def insert_once(state: State) -> bool:
    """`queries.insert_once`, reported when it inserted."""
    inserted = await queries.insert_once(state)
    if inserted:
        metrics.states_created([state])
    return inserted


async def insert_many_once(states: list[State]) -> None:
    """`queries.insert_many_once`, reporting the states it inserted."""
    metrics.states_created(await queries.insert_many_once(states))
