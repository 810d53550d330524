"""Queue health: per node, the due backlog and its age, delayed and claimed states, and when a
runtime last asked for the node's work.

Polls are recorded on `NodeStats.last_poll_ms`, at most once every `POLL_RECORD_MS` per node
and process (an enqueue call records at its start and at its end, so a runtime waiting in a
long-poll counts as asking). The counts are three small aggregations over the states that wait
(CREATED) or run (QUEUED), through the enqueue index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from state_manager.clock import now_ms
from state_manager.db import queries
from state_manager.db.documents import NodeStats, RegisteredNode, State
from state_manager.domain import gates
from state_manager.domain.status import StateStatus
from state_manager.schemas.queues import QueueRow, QueuesView
from state_manager.services.context import AppContext

POLL_RECORD_MS = 5_000


async def record_poll(ctx: AppContext, namespace: str, nodes: list[str]) -> None:
    """A runtime asked for these nodes' work now."""
    now = now_ms()
    due = [node for node in nodes if now - ctx.polls_recorded.get((namespace, node), 0) >= POLL_RECORD_MS]
    collection = NodeStats.get_motor_collection()
    for node in due:
        ctx.polls_recorded[(namespace, node)] = now
        await collection.update_one(
            {"namespace": namespace, "node_name": node}, {"$max": {"last_poll_ms": now}}, upsert=True
        )


@dataclass
class _Counts:
    due: int = 0
    held_back: dict[str, int] = field(default_factory=dict)
    oldest_due_ms: int | None = None
    delayed: int = 0
    claimed: int = 0
    last_poll_ms: int | None = None
    registered: bool = False


async def grouped(match: dict[str, Any], oldest: bool) -> dict[str, tuple[int, int | None]]:
    """node -> (how many states match, the smallest `enqueue_after` if `oldest`). Grouped on a
    plain field, which the embedded engine runs as SQL (see db/queries.py)."""
    group: dict[str, Any] = {"_id": "$node_name", "n": {"$sum": 1}}
    if oldest:
        group["oldest"] = {"$min": "$enqueue_after"}
    found: dict[str, tuple[int, int | None]] = {}
    async for row in State.get_motor_collection().aggregate([{"$match": match}, {"$group": group}]):
        found[str(row["_id"])] = (int(row["n"]), row.get("oldest"))
    return found


async def _counts(namespace: str, now: int) -> dict[str, _Counts]:
    created, queued = StateStatus.CREATED.value, StateStatus.QUEUED.value
    rows: dict[str, _Counts] = {}

    def row(node: str) -> _Counts:
        return rows.setdefault(node, _Counts())

    # By the queue key a claim reads (domain/queues.py): due is what a claim can take (in
    # `ready`, its priority counted, or delayed until a time that has come: the next claim moves
    # it), delayed what waits for its time, held back what a limit parked.
    waiting = {"namespace_name": namespace, "status": created}
    due_ones = (
        {**waiting, "ready": {"$gt": ""}},
        {**waiting, "delayed": {"$gt": ""}, "enqueue_after": {"$lte": now}},
    )
    for due in due_ones:
        for node, (n, oldest) in (await grouped(due, True)).items():
            counted = row(node)
            counted.due += n
            if oldest is not None:
                counted.oldest_due_ms = min(oldest, counted.oldest_due_ms or oldest)
    later = {**waiting, "delayed": {"$gt": ""}, "enqueue_after": {"$gt": now}}
    for node, (n, _) in (await grouped(later, False)).items():
        row(node).delayed = n
    for node, (n, _) in (await grouped({"namespace_name": namespace, "status": queued}, False)).items():
        row(node).claimed = n
    for kind in (gates.CONCURRENCY, gates.RATE, gates.RUNS):
        parked = {"namespace_name": namespace, "status": created, "parked": gates.kind_range(kind)}
        for node, (n, _) in (await grouped(parked, False)).items():
            row(node).held_back[kind] = n
    async for doc in RegisteredNode.get_motor_collection().find({"namespace": namespace}, {"name": 1}):
        row(doc["name"]).registered = True
    polls = {"namespace": namespace, "last_poll_ms": {"$ne": None}}
    async for doc in NodeStats.get_motor_collection().find(polls, {"node_name": 1, "last_poll_ms": 1}):
        if doc["node_name"] in rows:
            rows[doc["node_name"]].last_poll_ms = doc["last_poll_ms"]
    return rows


def _row(node: str, counts: _Counts, now: int, stall_ms: int) -> QueueRow:
    def age(ms: int | None) -> float | None:
        return None if ms is None else max(0, now - ms) / 1000

    polled_recently = counts.last_poll_ms is not None and now - counts.last_poll_ms <= stall_ms
    # Stalled: work has been due for longer than the threshold and nobody asked for it meanwhile.
    waiting_long = counts.oldest_due_ms is not None and now - counts.oldest_due_ms > stall_ms
    return QueueRow(
        node_name=node,
        registered=counts.registered,
        due=counts.due,
        held_back=counts.held_back,
        oldest_due_ms=counts.oldest_due_ms,
        oldest_due_age_seconds=age(counts.oldest_due_ms),
        delayed=counts.delayed,
        claimed=counts.claimed,
        last_poll_ms=counts.last_poll_ms,
        last_poll_age_seconds=age(counts.last_poll_ms),
        stalled=counts.due > 0 and waiting_long and not polled_recently,
        polled=polled_recently,
    )


async def queue_health(ctx: AppContext, namespace: str) -> QueuesView:
    """Every registered node of the namespace, and every node that has states waiting or running."""
    now = now_ms()
    stall_ms = int(ctx.settings.queue_stall_seconds * 1000)
    rows = await _counts(namespace, now)
    return QueuesView(
        namespace=namespace,
        stall_after_seconds=ctx.settings.queue_stall_seconds,
        now_ms=now,
        nodes=[_row(node, counts, now, stall_ms) for node, counts in sorted(rows.items())],
    )


async def all_queues(ctx: AppContext) -> list[tuple[str, QueueRow]]:
    """`queue_health` of every namespace that has nodes or waiting work: (namespace, row) pairs."""
    waiting = {"status": {"$in": [StateStatus.CREATED.value, StateStatus.QUEUED.value]}}
    namespaces = set(await queries.distinct_values(State, waiting, "namespace_name"))
    namespaces |= set(await RegisteredNode.get_motor_collection().distinct("namespace"))
    found: list[tuple[str, QueueRow]] = []
    for namespace in sorted(namespaces):
        found += [(namespace, row) for row in (await queue_health(ctx, namespace)).nodes]
    return found
