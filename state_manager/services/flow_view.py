"""The flow-control settings of a namespace's graphs and how much of each is in use (issue 18),
for the nodes page: each limit, and for each of its keys in use the slots held, the states
parked at it and, for a rate, when the next claim is allowed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from state_manager.clock import now_ms
from state_manager.db.documents import FlowGate, State
from state_manager.domain import gates
from state_manager.domain.models import ConcurrencyLimit, RateLimit
from state_manager.services.graphs import list_graphs

KEYS_SHOWN = 200  # gates read per namespace at most


@dataclass(frozen=True)
class KeyUse:
    key: str | None  # None: the limit holds for all, with no key
    held: int = 0  # slots held (concurrency, run concurrency)
    parked: int = 0  # states waiting at it
    holders: list[str] = field(default_factory=list)  # state ids or run ids
    next_slot_ms: int | None = None  # rate: when the next claim is allowed (None: now)


@dataclass(frozen=True)
class LimitUse:
    graph: str
    node: str | None  # the node's identifier (None: the graph's run concurrency)
    node_name: str | None
    kind: str  # domain/gates.py: CONCURRENCY, RATE or RUNS
    setting: str  # in words, e.g. "2 at once per ${{ store.tenant }}"
    keys: list[KeyUse]
    limit: int | None = None  # slots of a concurrency limit (None for a rate)


def _words(setting: ConcurrencyLimit | RateLimit) -> str:
    per = f" per {setting.key}" if setting.key else ""
    if isinstance(setting, RateLimit):
        burst = f", bursts of {setting.burst}" if setting.burst > 1 else ""
        return f"{setting.per_second:g} per second{burst}{per}"
    return f"{setting.limit} at once{per}"


async def limits_in_use(namespace: str) -> list[LimitUse]:
    """Every flow-control setting of the namespace's graphs, with its keys in use."""
    docs = [
        doc async for doc in FlowGate.get_motor_collection().find({"namespace": namespace}).limit(KEYS_SHOWN)
    ]
    by_limit: dict[tuple[str, str, str | None], list[dict[str, Any]]] = {}
    for doc in docs:
        by_limit.setdefault((doc["kind"], doc["graph"], doc.get("node")), []).append(doc)
    now = now_ms()
    found: list[LimitUse] = []
    for graph in await list_graphs(namespace):
        settings: list[tuple[str, str | None, str | None, Any]] = []
        if graph.concurrency is not None:
            settings.append((gates.RUNS, None, None, graph.concurrency))
        for node in graph.nodes:
            if node.concurrency is not None:
                settings.append((gates.CONCURRENCY, node.identifier, node.node_name, node.concurrency))
            if node.rate_limit is not None:
                settings.append((gates.RATE, node.identifier, node.node_name, node.rate_limit))
        for kind, identifier, node_name, setting in settings:
            keys = [await _use(doc, setting, now) for doc in by_limit.get((kind, graph.name, identifier), [])]
            keys.sort(key=lambda use: (-use.held, -use.parked, use.key or ""))
            slots = setting.limit if isinstance(setting, ConcurrencyLimit) else None
            found.append(LimitUse(graph.name, identifier, node_name, kind, _words(setting), keys, slots))
    return found


async def _use(doc: dict[str, Any], setting: Any, now: int) -> KeyUse:
    bounds = gates.park_range(doc["_id"])
    parked = await State.get_motor_collection().count_documents({"parked": bounds})
    holders = [
        key[len("run_") :] if pair is None else pair[0]
        for key in doc.get("holders") or {}
        for pair in [gates.holder_state(key)]
    ]
    next_slot = None
    if isinstance(setting, RateLimit):
        due = gates.rate_next_ms(int(doc.get("tat_us", 0)), now * 1000, setting)
        next_slot = due if due > now else None
    return KeyUse(doc.get("key"), int(doc.get("held", 0)), parked, holders, next_slot)
