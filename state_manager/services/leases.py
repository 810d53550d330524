"""Tuned leases for clients that never heartbeat: observed running times in, leases out.

Each process keeps each node's tuned lease for `_FRESH_SECONDS` before reading its statistics
again, so a claim reads nothing on the hot path. Every successful report adds its running time to
its node's samples (which also predict when waiting states start: services/why.py), written at
most once a second per node and process; only while a node is not tuned yet are the samples of
clients without a claim token written at once, so that tuning starts promptly.
"""

from __future__ import annotations

import time

import structlog
from bson import ObjectId

from state_manager.clock import now_ms, utcnow
from state_manager.db.documents import NodeStats, State
from state_manager.domain.leases import LeasePolicy, grown_lease_ms, tuned_lease_ms
from state_manager.services.context import AppContext

log = structlog.get_logger(__name__)

_FRESH_SECONDS = 10.0
_FLUSH_SECONDS = 1.0


def _policy(ctx: AppContext) -> LeasePolicy:
    settings = ctx.settings
    return LeasePolicy(
        multiplier=settings.tuned_lease_multiplier,
        floor_ms=int(settings.tuned_lease_floor_seconds * 1000),
        cap_ms=ctx.lease_ms,
        min_samples=settings.tuned_lease_min_samples,
    )


async def lease_for(ctx: AppContext, namespace: str, node: str) -> int | None:
    """The tuned lease of a node (ms), or None to use the default."""
    key = (namespace, node)
    cached = ctx.tuned_leases.get(key)
    if cached is not None and time.monotonic() - cached[1] < _FRESH_SECONDS:
        return cached[0]
    stats = await NodeStats.get_motor_collection().find_one({"namespace": namespace, "node_name": node})
    lease = (
        None
        if stats is None
        else tuned_lease_ms(_policy(ctx), stats.get("samples", []), stats.get("grown_ms", 0))
    )
    ctx.tuned_leases[key] = (lease, time.monotonic())
    return lease


async def apply_tuned_leases(ctx: AppContext, claimed: list[State]) -> None:
    """Give each claimed state its node's tuned lease (one write per node that has one)."""
    if not ctx.settings.tuned_leases or not claimed:
        return
    collection = State.get_motor_collection()
    for namespace, node in {(state.namespace_name, state.node_name) for state in claimed}:
        lease = await lease_for(ctx, namespace, node)
        if lease is None:
            continue
        mine = [state for state in claimed if (state.namespace_name, state.node_name) == (namespace, node)]
        for state in mine:
            state.lease_expires_at = (state.claimed_ms or now_ms()) + lease
            state.tuned_lease_ms = lease
        await collection.update_many(
            {"_id": {"$in": [ObjectId(str(s.id)) for s in mine]}, "claim_token": mine[0].claim_token},
            {"$set": {"lease_expires_at": mine[0].lease_expires_at, "tuned_lease_ms": lease}},
        )


async def observe_success(ctx: AppContext, state: State, *, tokenless: bool = True) -> None:
    """A client reported `state` executed: record its running time; for a tokenless client (no
    heartbeats), grow the node's lease if the run outlived the tuned lease it was given."""
    if state.claimed_ms is None:
        return
    took = max(0, now_ms() - state.claimed_ms)
    key = (state.namespace_name, state.node_name)
    pending, flushed_at = ctx.lease_samples.get(key, ([], 0.0))
    pending.append(took)
    tuned = ctx.tuned_leases.get(key, (None, 0.0))[0] is not None
    # Until the node is tuned a tokenless client's samples are written at once (so tuning starts
    # promptly); else they are written at most once a second per node, in one write.
    prompt = tokenless and ctx.settings.tuned_leases and not tuned
    if prompt or time.monotonic() - flushed_at >= _FLUSH_SECONDS:
        await NodeStats.get_motor_collection().update_one(
            {"namespace": state.namespace_name, "node_name": state.node_name},
            {
                "$push": {"samples": {"$each": pending, "$slice": -ctx.settings.tuned_lease_window}},
                "$set": {"updated_at": utcnow()},
            },
            upsert=True,
        )
        ctx.lease_samples[key] = ([], time.monotonic())
        if not tuned:
            ctx.tuned_leases.pop(key, None)  # not tuned yet: the next claim looks again
    else:
        ctx.lease_samples[key] = (pending, flushed_at)
    if tokenless and ctx.settings.tuned_leases:
        await observe_late(ctx, state, took)


async def observe_late(ctx: AppContext, state: State, took: int | None = None) -> None:
    """Grow the node's lease when a run of `state` outlived its tuned lease (slow, not dead)."""
    if state.tuned_lease_ms is None or state.claimed_ms is None:
        return
    took = took if took is not None else max(0, now_ms() - state.claimed_ms)
    if took <= state.tuned_lease_ms:
        return
    # `$max` keeps the larger of what is stored and this run's need: one write, no read.
    grown = grown_lease_ms(_policy(ctx), took, 0)
    await NodeStats.get_motor_collection().update_one(
        {"namespace": state.namespace_name, "node_name": state.node_name},
        {"$max": {"grown_ms": grown}, "$set": {"updated_at": utcnow()}},
        upsert=True,
    )
    ctx.tuned_leases.pop((state.namespace_name, state.node_name), None)
    log.warning(
        "tuned_lease_grown",
        namespace=state.namespace_name,
        node=state.node_name,
        took_ms=took,
        lease_ms=state.tuned_lease_ms,
        grown_ms=grown,
    )
