"""Why is it waiting (issue 18): the facts `domain/why.py` decides from, read for one state or
for a run's waiting states."""

from __future__ import annotations

from typing import Any

from bson import ObjectId

from state_manager.clock import now_ms
from state_manager.db import queries
from state_manager.db.documents import FlowGate, NodeStats, Run, State
from state_manager.domain import gates
from state_manager.domain.models import RateLimit
from state_manager.domain.queues import ready_range
from state_manager.domain.status import UNSETTLED, StateStatus
from state_manager.domain.why import GateFacts, JoinFacts, WaitFacts, Why, why
from state_manager.errors import NotFound
from state_manager.services import gates as gate_service
from state_manager.services.context import AppContext
from state_manager.services.graphs import graph_of, graph_shape
from state_manager.services.queues import grouped
from state_manager.services.states import load_operated_state


async def state_why(ctx: AppContext, namespace: str, state_id: ObjectId) -> tuple[State, Why]:
    """Why one state waits (404 for a state unknown in the namespace)."""
    state = await load_operated_state(namespace, state_id)
    node = await _NodeFacts.read(ctx, state.namespace_name, state.node_name)
    doc = state.model_dump()
    if state.parked:
        gate, ahead = await _gate_facts(ctx, state.parked)
        return state, why(node.facts(doc, ahead, gate=gate))
    if state.status in (StateStatus.SUCCESS, StateStatus.EXECUTED) and state.below_open > 0:
        join = await _join_facts(ctx, state)
        if join is not None:
            return state, why(node.facts(doc, 0, join=join))
    ahead = await _ahead(state.namespace_name, state.node_name, state.ready)
    return state, why(node.facts(doc, ahead))


async def _gate_facts(ctx: AppContext, parked: str) -> tuple[GateFacts | None, int]:
    """The gate a state is parked at (`parked`), and how many are parked there before it."""
    gate = gates.gate_of_parked(parked)
    bounds = gates.park_range(gate)
    ahead = await State.get_motor_collection().count_documents(
        {"parked": {"$gte": bounds["$gte"], "$lt": parked}}
    )
    doc = await FlowGate.get_motor_collection().find_one({"_id": gate}) or {}
    setting = await gate_service.setting_of(ctx, gate)
    parsed = gates.parse(gate)
    if setting is None:
        return None, ahead  # its limit was taken off: it goes back to its queue at once
    holders = doc.get("holders") or {}
    if isinstance(setting, RateLimit):
        next_slot = gates.rate_next_ms(int(doc.get("tat_us", 0)), now_ms() * 1000, setting)
        facts = GateFacts(
            parsed.kind,
            parsed.key,
            parsed.graph,
            per_second=setting.per_second,
            burst=setting.burst,
            next_slot_ms=next_slot,
        )
        return facts, ahead
    ids = [_holder_id(key) for key in holders]
    facts = GateFacts(
        parsed.kind,
        parsed.key,
        parsed.graph,
        limit=setting.limit,
        holders=ids,
        holders_started_ms=[int(at) for at in holders.values()],
    )
    return facts, ahead


def _holder_id(key: str) -> str:
    pair = gates.holder_state(key)
    return key[len("run_") :] if pair is None else pair[0]


async def _open_states(run_id: str) -> list[dict[str, Any]]:
    """A run's states not settled yet (their parents), at most a few hundred: the blockers of its
    waiting joins are among them."""
    unsettled = [status.value for status in UNSETTLED]
    return await queries.run_states_where(
        run_id, {"status": {"$in": unsettled}}, fields=("parents",), limit=_BLOCKERS * 20
    )


async def _join_facts(
    ctx: AppContext, anchor: State, below: list[dict[str, Any]] | None = None
) -> JoinFacts | None:
    """The join above a state that ran, while branches below it are open (None: it has none);
    `below`: its run's open states, when already read."""
    graph = await graph_of(ctx, anchor)
    joins = graph_shape(graph).joins_on.get(anchor.identifier, []) if graph is not None else []
    if not joins:
        return None
    if below is None:
        below = await _open_states(anchor.run_id)
    open_ids = [
        str(doc["_id"]) for doc in below if doc.get("parents", {}).get(anchor.identifier) == str(anchor.id)
    ]
    settled = anchor.below_created - anchor.below_open
    return JoinFacts(", ".join(joins), settled, anchor.below_created, open_ids[:_BLOCKERS])


_BLOCKERS = 20  # blockers listed at most


async def run_why(ctx: AppContext, namespace: str, run_id: str) -> list[dict[str, Any]]:
    """A run's waiting states, summed up by node and reason: how many, the first one's detail
    and the earliest predicted start."""
    if await Run.get_motor_collection().find_one({"run_id": run_id, "namespace_name": namespace}) is None:
        raise NotFound(f"Run {run_id} not found in namespace {namespace}")
    fields = ("namespace_name", "node_name", "identifier", "status", "enqueue_after", "priority_ms")
    waiting = await queries.run_states_where(
        run_id, {"status": StateStatus.CREATED.value}, fields=(*fields, "not_before_ms", "ready", "parked")
    )
    nodes: dict[tuple[str, str], _NodeFacts] = {}
    parked_at: dict[str, tuple[GateFacts | None, int]] = {}
    rows: dict[tuple[tuple[str, str], str | None], dict[str, Any]] = {}
    for doc in sorted(waiting, key=lambda d: (d.get("ready") or d.get("parked") or "~", d["_id"])):
        key = (doc["namespace_name"], doc["node_name"])
        first = key not in nodes  # the node's first waiting state: its place in the queue is read
        if first:
            nodes[key] = await _NodeFacts.read(ctx, *key)
        if doc.get("parked"):
            gate_id = gates.gate_of_parked(doc["parked"])
            if gate_id not in parked_at:  # the first parked at each gate: its place there is read
                parked_at[gate_id] = await _gate_facts(ctx, doc["parked"])
                gate, ahead = parked_at[gate_id]
            else:
                gate, ahead = parked_at[gate_id][0], 0
            answer = why(nodes[key].facts(doc, ahead, gate=gate))
        else:
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
                "blockers": answer.blockers,
            },
        )
        row["count"] += 1
        if answer.predicted_start_ms is not None:
            known = row["predicted_start_ms"]
            row["predicted_start_ms"] = min(answer.predicted_start_ms, known or answer.predicted_start_ms)
    return list(rows.values()) + await _joins_waiting(ctx, run_id)


async def _joins_waiting(ctx: AppContext, run_id: str) -> list[dict[str, Any]]:
    """The run's joins not made yet, because branches below their anchors are still open."""
    anchors = await queries.run_states_where(
        run_id, {"status": StateStatus.SUCCESS.value, "below_open": {"$gt": 0}}, limit=_BLOCKERS
    )
    rows: list[dict[str, Any]] = []
    below = await _open_states(run_id) if anchors else []
    for doc in anchors:
        anchor = State.model_validate(doc)
        join = await _join_facts(ctx, anchor, below)
        if join is None:
            continue
        answer = why(WaitFacts("SUCCESS", anchor.node_name, anchor.namespace_name, now_ms(), join=join))
        rows.append(
            {
                "node": anchor.node_name,
                "namespace": anchor.namespace_name,
                "reason": answer.reason,
                "count": 1,
                "detail": answer.detail,
                "predicted_start_ms": None,
                "blockers": answer.blockers,
            }
        )
    return rows


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

    def facts(
        self, doc: dict[str, Any], ahead: int, *, gate: GateFacts | None = None, join: JoinFacts | None = None
    ) -> WaitFacts:
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
            gate=gate,
            join=join,
        )
