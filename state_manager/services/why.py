"""Why is it waiting (issue 18): the facts `domain/why.py` decides from, read for one state or
for a run's waiting states."""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from state_manager.clock import now_ms
from state_manager.db import queries
from state_manager.db.documents import NodeStats, Run, State
from state_manager.domain.queues import ready_range
from state_manager.domain.status import StateStatus
from state_manager.domain.why import WaitFacts, Why, why
from state_manager.errors import NotFound
from state_manager.services.context import AppContext
from state_manager.services.queues import grouped
from state_manager.services.states import load_operated_state


async def state_why(ctx: AppContext, namespace: str, state_id: ObjectId) -> tuple[State, Why]:
    """Why one state waits (404 for a state unknown in the namespace)."""
    state = await load_operated_state(namespace, state_id)
    node = await _NodeFacts.read(ctx, state.namespace_name, state.node_name)
    ahead = await _ahead(state.namespace_name, state.node_name, state.ready)
    return state, why(node.facts(state.model_dump(), ahead))


async def run_why(ctx: AppContext, namespace: str, run_id: str) -> list[dict[str, Any]]:
    """A run's waiting states, summed up by node and reason: how many, the first one's detail
    and the earliest predicted start."""
    if await Run.get_motor_collection().find_one({"run_id": run_id, "namespace_name": namespace}) is None:
        raise NotFound(f"Run {run_id} not found in namespace {namespace}")
    fields = ("namespace_name", "node_name", "identifier", "status", "enqueue_after", "priority_ms")
    waiting = await queries.run_states_where(
        run_id, {"status": StateStatus.CREATED.value}, fields=(*fields, "not_before_ms", "ready")
    )
    nodes: dict[tuple[str, str], _NodeFacts] = {}
    rows: dict[tuple[tuple[str, str], str | None], dict[str, Any]] = {}
    for doc in sorted(waiting, key=lambda d: (d.get("ready") or "~", d["_id"])):
        key = (doc["namespace_name"], doc["node_name"])
        first = key not in nodes  # the node's first waiting state: its place in the queue is read
        if first:
            nodes[key] = await _NodeFacts.read(ctx, *key)
        ahead = await _ahead(*key, doc.get("ready")) if first else 0
        answer = why(nodes[key].facts(doc, ahead))
        row = rows.setdefault(
            (key, answer.reason),
            {
                "node": doc["node_name"],
                "namespace": doc["namespace_name"],
                "reason": answer.reason,
                "count": 0,
                "detail": answer.detail,
                "predicted_start_ms": answer.predicted_start_ms,
            },
        )
        row["count"] += 1
        if answer.predicted_start_ms is not None:
            known = row["predicted_start_ms"]
            row["predicted_start_ms"] = min(answer.predicted_start_ms, known or answer.predicted_start_ms)
    return list(rows.values())


async def _ahead(namespace: str, node: str, ready: str | None) -> int:
    """How many due states of the node are claimed before one whose queue key is `ready`."""
    if not ready:
        return 0
    bounds = ready_range(namespace, node)
    return int(
        await State.get_motor_collection().count_documents({"ready": {"$gte": bounds["$gte"], "$lt": ready}})
    )


class _NodeFacts:
    """What the server knows of a node: when a runtime last asked for its work, how many of its
    states run now, and how long they took lately."""

    def __init__(
        self, ctx: AppContext, namespace: str, node: str, stats: dict[str, Any] | None, running: int
    ):
        self.window_ms = int(ctx.settings.queue_stall_seconds * 1000)
        self.namespace, self.node = namespace, node
        self.last_poll_ms = (stats or {}).get("last_poll_ms")
        self.durations_ms = list((stats or {}).get("samples") or [])
        self.running = running

    @classmethod
    async def read(cls, ctx: AppContext, namespace: str, node: str) -> _NodeFacts:
        stats = await NodeStats.get_motor_collection().find_one({"namespace": namespace, "node_name": node})
        # Counted as the queues page counts (an aggregation on plain fields: no collection scan).
        held = {"namespace_name": namespace, "status": StateStatus.QUEUED.value, "node_name": node}
        running, _ = (await grouped(held, False)).get(node, (0, None))
        return cls(ctx, namespace, node, stats, running)

    def facts(self, doc: dict[str, Any], ahead: int) -> WaitFacts:
        return WaitFacts(
            status=str(doc.get("status")),
            node=self.node,
            namespace=self.namespace,
            now=now_ms(),
            enqueue_after=doc.get("enqueue_after", 0),
            priority_ms=doc.get("priority_ms", 0),
            not_before_ms=doc.get("not_before_ms"),
            last_poll_ms=self.last_poll_ms,
            poll_window_ms=self.window_ms,
            ahead=ahead,
            running=self.running,
            durations_ms=self.durations_ms,
        )
