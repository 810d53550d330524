"""The recovery pass: finishes what a crash interrupted and re-delivers abandoned work.

Safe to run on every replica at once: each step is a conditional write or an idempotent
creation keyed by `spawn_key`. Work is read in bounded batches, and every item is handled in
isolation: one that fails is logged with its traceback and counted (on the item, so that it is
failed visibly after `effect_attempts` tries) and the pass goes on with the rest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from beanie import Document
from bson import ObjectId

from state_manager.clock import now_ms
from state_manager.db import queries
from state_manager.db.documents import Run, State
from state_manager.domain.effects import Effect
from state_manager.domain.status import StateStatus
from state_manager.services import forks, gates, run_status
from state_manager.services.context import AppContext
from state_manager.services.progress import settle_isolated
from state_manager.services.runs import seed_run
from state_manager.services.states import expire_lease

log = structlog.get_logger(__name__)

TALLY_GRACE_MS = 2000

D = TypeVar("D", bound=Document)


@dataclass
class RecoveryReport:
    leases_expired: int = 0
    timed_out: int = 0
    effects_completed: int = 0
    runs_seeded: int = 0
    failures: int = 0


async def _batches(
    fetch: Callable[[dict[str, Any], int], Awaitable[list[D]]], query: dict[str, Any], size: int
) -> AsyncIterator[list[D]]:
    """Walk the documents matching `query` in `_id` order, `size` at a time.

    Each batch starts after the last `_id` seen, so an item that stays in the query (it failed)
    is not read again in the same pass.
    """
    after: ObjectId | None = None
    while True:
        page = query if after is None else {**query, "_id": {"$gt": after}}
        batch = await fetch(page, size)
        if not batch:
            return
        yield batch
        if len(batch) < size:
            return
        after = ObjectId(str(batch[-1].id))


def _oid(state: State) -> ObjectId:
    return ObjectId(str(state.id))


async def _states(query: dict[str, Any], size: int) -> list[State]:
    return await queries.find_states(query, sort=[("_id", 1)], limit=size)


async def _runs(query: dict[str, Any], size: int) -> list[Run]:
    return await Run.find(query).sort("_id").limit(size).to_list()


async def recover_once(ctx: AppContext) -> RecoveryReport:
    report = RecoveryReport()
    now = now_ms()
    await _expire(ctx, report, {"status": StateStatus.QUEUED.value, "lease_expires_at": {"$lt": now}}, False)
    await _expire(ctx, report, {"status": StateStatus.QUEUED.value, "deadline_ms": {"$lt": now}}, True)
    stale = now - ctx.grace_ms
    await _complete_effects(ctx, report, {"pending_effect": {"$in": [Effect.SPAWN, Effect.JOINS]}}, stale)
    # A tally that a crash left owing is taken over sooner: counting is idempotent however many
    # writers try it at once, and a run's end waits for it (at most one recovery interval more).
    tally_stale = now - min(ctx.grace_ms, TALLY_GRACE_MS)
    await _complete_effects(ctx, report, {"pending_effect": Effect.TALLY.value}, tally_stale)
    await gates.wake_due(ctx)  # parked states whose gate may let them in (a crash lost its wake)
    async for runs in _batches(
        _runs, {"seeded": False, "created_ms": {"$lt": stale}}, ctx.settings.recovery_batch_size
    ):
        for run in runs:
            if await _seed_isolated(ctx, run):
                report.runs_seeded += 1
            else:
                report.failures += 1
    return report


async def _expire(ctx: AppContext, report: RecoveryReport, query: dict[str, Any], timed_out: bool) -> None:
    """Fence off and re-deliver (or fail) claimed states whose lease ran out, or whose node's
    timeout passed."""
    async for states in _batches(_states, query, ctx.settings.recovery_batch_size):
        for state in states:
            try:
                await expire_lease(ctx, state, timed_out=timed_out)
            except Exception:
                log.exception("recovery_expiry_failed", state_id=str(state.id), run_id=state.run_id)
                report.failures += 1
            else:
                report.timed_out += timed_out
                report.leases_expired += not timed_out


async def _complete_effects(
    ctx: AppContext, report: RecoveryReport, owing: dict[str, Any], stale: int
) -> None:
    """Finish the effects nobody has touched since `stale`: each taken over by one replica."""
    pending = {**owing, "updated_ms": {"$lt": stale}}
    async for states in _batches(_states, pending, ctx.settings.recovery_batch_size):
        for state in states:
            assert state.pending_effect is not None
            if not await queries.take_stale(_oid(state), state.pending_effect, stale):
                continue  # another replica took it, or its settle is still going on
            if await settle_isolated(ctx, state):
                report.effects_completed += 1
            else:
                report.failures += 1


async def _seed_isolated(ctx: AppContext, run: Run) -> bool:
    try:
        if run.fork is not None:
            await forks.complete(ctx, run)  # a fork's copies and first states
        else:
            await seed_run(ctx, run)
    except Exception as exc:
        log.exception("recovery_seed_failed", run_id=run.run_id, graph=run.graph_name)
        failures = run.seed_failures + 1
        fields: dict[str, Any] = {"seed_failures": failures}
        if failures >= ctx.settings.effect_attempts:
            # Given up: the run keeps no root states, so it reads as FAILED, and the log says why.
            fields["seeded"] = True
            log.error("run_abandoned", run_id=run.run_id, graph=run.graph_name, reason=str(exc)[:500])
        await Run.get_motor_collection().update_one({"_id": run.id, "seeded": False}, {"$set": fields})
        if fields.get("seeded"):
            await run_status.abandon_seeds(run.run_id, len(run.seeds))  # it ends FAILED: no states
        return False
    return True
