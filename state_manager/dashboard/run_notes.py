"""What a run's page says about a run that is not moving, and why:

- a run triggered with a start delay: when it starts ("starts at 14:05:00 UTC, in 59 s");
- a run with states waiting for a node that no runtime asks for (the queues' own notion of
  stalled, services/queues.py): which node, in which namespace, and since when.

Read only for a run still going, and only what it needs: its waiting states' due times while it
is PENDING, the queues of the namespaces its waiting nodes live in when it has waiting states.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from state_manager.dashboard.common import FINAL_RUN_STATUSES
from state_manager.dashboard.timeline import due_at
from state_manager.schemas.queues import QueueRow
from state_manager.schemas.runs import GraphNodeView, RunDetail, StateView
from state_manager.services import queues, run_views
from state_manager.services.context import AppContext

WAITING = "CREATED"
SEEDS_READ = 100  # a PENDING run's waiting states read for its start time (its seeds)


@dataclass(frozen=True)
class StalledNode:
    namespace: str  # the node's namespace (where its runtime claims work)
    node_name: str
    waiting: int  # this run's states of the node that wait
    row: QueueRow  # the node's queue: due states, their age, the last poll


@dataclass(frozen=True)
class RunNotes:
    starts_at: int | None = None
    stalled: list[StalledNode] = field(default_factory=list)


def start_time(states: Sequence[StateView], now: int) -> int | None:
    """When a run none of whose states has been claimed starts: the earliest due time of its
    waiting states, if that is still to come."""
    due = [due_at(s) for s in states if s.status == WAITING]
    first = min(due, default=None)
    return first if first is not None and first > now else None


def waiting_nodes(nodes: Sequence[GraphNodeView]) -> dict[tuple[str, str], int]:
    """(node namespace, node name) -> how many of the run's states of it wait."""
    found: dict[tuple[str, str], int] = {}
    for node in nodes:
        if node.counts.get(WAITING):
            key = (node.namespace, node.node_name)
            found[key] = found.get(key, 0) + node.counts[WAITING]
    return found


def stalled_nodes(
    waiting: Mapping[tuple[str, str], int], rows: Mapping[tuple[str, str], QueueRow]
) -> list[StalledNode]:
    """The nodes the run waits for whose queue is stalled, by namespace and name."""
    return [
        StalledNode(namespace, node, n, rows[(namespace, node)])
        for (namespace, node), n in sorted(waiting.items())
        if (namespace, node) in rows and rows[(namespace, node)].stalled
    ]


async def _queue_rows(ctx: AppContext, namespaces: set[str]) -> dict[tuple[str, str], QueueRow]:
    rows: dict[tuple[str, str], QueueRow] = {}
    for namespace in sorted(namespaces):
        for row in (await queues.queue_health(ctx, namespace)).nodes:
            rows[(namespace, row.node_name)] = row
    return rows


async def run_notes(
    ctx: AppContext, ns: str, run: RunDetail, nodes: Sequence[GraphNodeView] | None, now: int
) -> RunNotes:
    """The notes of `run`; `nodes` are its template graph's (None: not read, so no stall check)."""
    if run.status in FINAL_RUN_STATUSES or not run.counts.get(WAITING):
        return RunNotes()
    starts_at = None
    if run.status == "PENDING":
        seeds = await run_views.state_page(ns, run.run_id, status=WAITING, limit=SEEDS_READ)
        starts_at = start_time(seeds.states, now)
    waiting = waiting_nodes(nodes or [])
    rows = await _queue_rows(ctx, {namespace for namespace, _ in waiting}) if waiting else {}
    return RunNotes(starts_at=starts_at, stalled=stalled_nodes(waiting, rows))
