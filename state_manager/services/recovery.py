"""The recovery pass: finishes what a crash interrupted and re-delivers abandoned work.

Safe to run on every replica at once: each step is a conditional write or an idempotent
creation keyed by `spawn_key`.
"""

from __future__ import annotations

from dataclasses import dataclass

from state_manager.clock import now_ms
from state_manager.db import queries
from state_manager.db.documents import Run
from state_manager.domain.status import StateStatus
from state_manager.services.context import AppContext
from state_manager.services.progress import settle
from state_manager.services.runs import seed_run
from state_manager.services.states import expire_lease


@dataclass
class RecoveryReport:
    leases_expired: int = 0
    effects_completed: int = 0
    runs_seeded: int = 0


async def recover_once(ctx: AppContext) -> RecoveryReport:
    report = RecoveryReport()
    now = now_ms()
    for state in await queries.find_states(
        {"status": StateStatus.QUEUED.value, "lease_expires_at": {"$lt": now}}
    ):
        await expire_lease(ctx, state)
        report.leases_expired += 1
    stale = now - ctx.grace_ms
    for state in await queries.find_states({"pending_effect": {"$ne": None}, "updated_ms": {"$lt": stale}}):
        await settle(ctx, state)
        report.effects_completed += 1
    async for run in Run.find({"seeded": False, "created_ms": {"$lt": stale}}):
        await seed_run(ctx, run)
        report.runs_seeded += 1
    return report
