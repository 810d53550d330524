"""Cron triggers: fire due schedules. Safe with any number of replicas running it at once.

A schedule is claimed with an atomic update (a claim that expires, so a crash does not wedge
it); the run id is derived from the schedule and its fire time, so a tick fires at most one run
even if two replicas race past an expired claim. After firing, the next time is computed from
*now*: missed ticks are skipped, never replayed in a burst.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import NAMESPACE_URL, uuid5

import structlog
from pymongo import ReturnDocument

from state_manager import metrics
from state_manager.clock import now_ms, utcnow
from state_manager.db.documents import CronSchedule
from state_manager.domain.cron import next_fire_after
from state_manager.errors import DomainError
from state_manager.schemas.states import TriggerRequest
from state_manager.services.context import AppContext
from state_manager.services.runs import trigger_graph

log = structlog.get_logger(__name__)

CLAIM_MS = 60_000


async def fire_due(ctx: AppContext) -> int:
    """Fire every schedule that is due; returns how many fired."""
    fired = 0
    while (schedule := await _claim_due()) is not None:
        await _fire(ctx, schedule)
        fired += 1
    return fired


async def _claim_due() -> CronSchedule | None:
    now = now_ms()
    doc = await CronSchedule.get_motor_collection().find_one_and_update(
        {"next_fire_ms": {"$lte": now}, "claimed_until_ms": {"$lt": now}},
        {"$set": {"claimed_until_ms": now + CLAIM_MS}},
        sort=[("next_fire_ms", 1)],
        return_document=ReturnDocument.AFTER,
    )
    return None if doc is None else CronSchedule.model_validate(doc)


async def _fire(ctx: AppContext, schedule: CronSchedule) -> None:
    run_id = str(uuid5(NAMESPACE_URL, f"exosphere-cron:{schedule.id}:{schedule.next_fire_ms}"))
    error: str | None = None
    try:
        await trigger_graph(
            ctx, schedule.namespace, schedule.graph_name, TriggerRequest(), run_id=run_id, triggered_by="cron"
        )
    except DomainError as exc:
        error = exc.detail
        log.warning(
            "cron_trigger_failed", graph=schedule.graph_name, namespace=schedule.namespace, error=error
        )
    metrics.cron_fired(schedule.namespace, schedule.graph_name, triggered=error is None)
    due = datetime.fromtimestamp(schedule.next_fire_ms / 1000, UTC)
    following = next_fire_after(schedule.expression, max(due, utcnow()))
    await CronSchedule.get_motor_collection().update_one(
        {"_id": schedule.id, "next_fire_ms": schedule.next_fire_ms},
        {
            "$set": {
                "next_fire_ms": int(following.timestamp() * 1000),
                "claimed_until_ms": 0,
                "last_run_id": None if error else run_id,
                "last_error": error,
            }
        },
    )
