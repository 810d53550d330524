"""Deleting a graph: refused while it has open runs, unless forced, which cancels them first.

Its own module because it needs both graphs and runs (runs read graphs when they start)."""

from __future__ import annotations

import contextlib

import structlog

from state_manager.db.documents import CronSchedule, GraphTemplate, Run
from state_manager.errors import Conflict, NotFound
from state_manager.services import runs
from state_manager.services.context import AppContext
from state_manager.services.graphs import find_graph

log = structlog.get_logger(__name__)

_OPEN = ["PENDING", "RUNNING"]
_SHOWN = 5


async def open_run_ids(namespace: str, graph_name: str) -> list[str]:
    """The runs of the graph that have not ended (not a hot path: a deletion)."""
    found = Run.get_motor_collection().find(
        {"namespace_name": namespace, "graph_name": graph_name, "status": {"$in": _OPEN}}, {"run_id": 1}
    )
    return [doc["run_id"] async for doc in found]


async def delete_graph(ctx: AppContext, namespace: str, name: str, force: bool) -> int:
    """Delete a graph and its cron schedules; how many open runs were cancelled for it.

    While it has open runs it is refused (409) unless `force`, which cancels them first (a run
    that ends meanwhile is left as it ended). Finished runs keep their states and pages."""
    if await find_graph(namespace, name) is None:
        raise NotFound(f"Graph template {name} not found in namespace {namespace}")
    open_runs = await open_run_ids(namespace, name)
    if open_runs and not force:
        shown = ", ".join(open_runs[:_SHOWN]) + (", ..." if len(open_runs) > _SHOWN else "")
        raise Conflict(
            f"Graph {name} has {len(open_runs)} open run(s) ({shown}): cancel them first, or "
            "delete it with force=true, which cancels them"
        )
    for run_id in open_runs:
        with contextlib.suppress(Conflict):  # it ended meanwhile
            await runs.cancel_run(ctx, namespace, run_id)
    await GraphTemplate.get_motor_collection().delete_one({"name": name, "namespace": namespace})
    await CronSchedule.get_motor_collection().delete_many({"namespace": namespace, "graph_name": name})
    ctx.templates.forget(namespace, name)
    log.info("graph_deleted", namespace=namespace, graph=name, cancelled_runs=len(open_runs))
    return len(open_runs)
