"""Flow-control gates (issue 18, domain/gates.py): a claim passes them, a closed one parks what it
holds back, and a slot that frees or a rate that allows again lets the parked states back.

Every gate is one document (`FlowGate`), changed only by conditional updates, so two replicas
never hand out more than a gate allows:

- a slot (concurrency, run concurrency) is taken by adding its holder to `holders` and counting
  it in `held`, on the condition that `held` leaves room (or equals what was read); it is given
  back by removing exactly that holder (so twice gives back once). A holder that died without
  giving its slot back (a crash between its report and the give-back, or a worker whose lease
  ran out) is found when the gate is full: a holder whose state no longer holds that claim (or
  whose run has ended) is removed;
- a rate's next due time (`tat_us`) moves on only from the value read (compare and set).

A state held back is parked (`State.parked`) and the gate notes when to look again (`wake_ms`):
at its next rate slot, or, for slots, after RECHECK_MS (a safety net: a slot given back wakes
its gate at once). The gates due are looked at on the claim path and by the recovery pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from state_manager.clock import now_ms
from state_manager.db import queries
from state_manager.db.documents import FlowGate, GraphTemplate, Run, State
from state_manager.domain import gates
from state_manager.domain.models import ConcurrencyLimit, RateLimit
from state_manager.domain.status import StateStatus
from state_manager.services.context import AppContext
from state_manager.services.graphs import graph_shape, template_for

log = structlog.get_logger(__name__)

_TRIES = 3
_WAKE_BATCH = 100  # gates looked at per sweep
_UNPARK_MAX = 1000  # parked states let back at once by a gate whose limit was taken off
_OPEN_RUN = ("PENDING", "RUNNING")
# How long a slot gate with states parked waits before it is looked at again when nothing gives
# a slot back (a safety net: a slot given back, or a lease that ran out, wakes it at once).
RECHECK_MS = 30_000


def _gates() -> Any:
    return FlowGate.get_motor_collection()


def _meta(gate: str) -> dict[str, Any]:
    parsed = gates.parse(gate)
    return {
        "kind": parsed.kind,
        "namespace": parsed.namespace,
        "graph": parsed.graph,
        "node": parsed.node,
        "key": parsed.key,
    }


async def setting_of(ctx: AppContext | None, gate: str, version: int = 0) -> Any:
    """The limit a gate applies now, from its graph's newest version (None: taken off, or the
    graph is gone: the gate lets everything through)."""
    parsed = gates.parse(gate)
    if ctx is not None:
        graph = await template_for(ctx, parsed.namespace, parsed.graph, version)
    else:
        graph = await queries.find_one(GraphTemplate, {"name": parsed.graph, "namespace": parsed.namespace})
    if graph is None:
        return None
    return gates.limit_of(parsed, graph_shape(graph).by_id, graph.concurrency)


# ---------------------------------------------------------------- passing the gates


@dataclass
class Admission:
    """What `admit` let through, and what each of those took (to give back if its claim fails)."""

    passed: list[dict[str, Any]]
    taken: dict[Any, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    parked: int = 0


async def admit(ctx: AppContext, due: list[dict[str, Any]], token: str) -> Admission:
    """Of the due states a claim read (in order), those that pass their gates now. Each gate is
    asked once for all the states that need it; the ones it holds back are parked at it, and
    give back what they took at the gates before."""
    admission = Admission(passed=list(due))
    order = list(dict.fromkeys(gate for doc in due for gate in doc.get("gates") or []))
    for gate in order:
        wanting = [doc for doc in admission.passed if gate in (doc.get("gates") or [])]
        if not wanting:
            continue
        setting = await setting_of(ctx, gate, max(doc.get("graph_version", 0) for doc in wanting))
        if setting is None:
            continue
        now = now_ms()
        if isinstance(setting, RateLimit):
            granted, undo = await _take_rate(gate, setting, len(wanting), now)
            allowed = wanting[:granted]
        else:
            allowed, undo = await _take_slots(gate, setting, wanting, token, now)
        for doc in allowed:
            admission.taken.setdefault(doc["_id"], []).append((gate, undo(doc)))
        allowed_ids = {doc["_id"] for doc in allowed}
        refused = [doc for doc in wanting if doc["_id"] not in allowed_ids]
        if refused:
            await give_back(refused, admission.taken)
            admission.parked += await _park(ctx, gate, setting, refused, now)
            admission.passed = [
                doc for doc in admission.passed if doc["_id"] not in {d["_id"] for d in refused}
            ]
    return admission


async def give_back(docs: list[dict[str, Any]], taken: dict[Any, list[tuple[str, dict[str, Any]]]]) -> None:
    """Undo what these states took at their gates (their claim did not happen)."""
    for doc in docs:
        for gate, undo in taken.pop(doc["_id"], []):
            if undo:
                await _gates().update_one({"_id": gate, **undo.get("if", {})}, undo["do"])


def _holder_of(doc: dict[str, Any], gate: str, token: str) -> str:
    if gates.parse(gate).kind == gates.RUNS:
        return gates.run_holder(doc["run_id"])
    return gates.holder(str(doc["_id"]), token)


async def _take_slots(
    gate: str, limit: ConcurrencyLimit, wanting: list[dict[str, Any]], token: str, now: int
) -> tuple[list[dict[str, Any]], Callable[[dict[str, Any]], dict[str, Any]]]:
    """Take a slot of `gate` for each of `wanting` that the limit leaves room for, in order (a
    run already holding a slot of its graph's gate passes without another)."""
    runs = gates.parse(gate).kind == gates.RUNS

    def undo(doc: dict[str, Any]) -> dict[str, Any]:
        if runs:
            return {}  # a run's slot is shared by its root states: kept until the run ends
        key = f"holders.{_holder_of(doc, gate, token)}"
        return {"if": {key: {"$exists": True}}, "do": {"$unset": {key: ""}, "$inc": {"held": -1}}}

    keys = list(dict.fromkeys(_holder_of(doc, gate, token) for doc in wanting))
    if len(keys) <= limit.limit:  # room for all, the common case: one write
        condition: dict[str, Any] = {"held": {"$lte": limit.limit - len(keys)}}
        if runs:
            condition |= {f"holders.{key}": {"$exists": False} for key in keys}
        with contextlib.suppress(DuplicateKeyError):
            result = await _gates().update_one(
                {"_id": gate, **condition}, _taking(gate, keys, now, limit.limit), upsert=True
            )
            if result.modified_count or result.upserted_id is not None:
                return wanting, undo
    for _ in range(_TRIES):  # not room for all: read what is held, take what is left
        doc = await _gates().find_one({"_id": gate})
        if doc is None:
            with contextlib.suppress(DuplicateKeyError):
                await _gates().update_one({"_id": gate}, {"$setOnInsert": _new_gate(gate)}, upsert=True)
            continue
        holders = doc.get("holders") or {}
        holding = [key for key in keys if key in holders]
        wanted = [key for key in keys if key not in holders]
        held = int(doc.get("held", 0))
        if held + len(wanted) > limit.limit and held >= limit.limit:
            held -= await _drop_dead_holders(gate, holders, now)
        room = min(len(wanted), gates.free_slots(limit.limit, held))
        new = wanted[:room]
        if new:
            result = await _gates().update_one(
                {"_id": gate, "held": held, **{f"holders.{key}": {"$exists": False} for key in new}},
                _taking(gate, new, now, limit.limit, upsert=False),
            )
            if not result.modified_count:
                continue  # changed meanwhile: read again
        granted = set(holding) | set(new)
        return [doc for doc in wanting if _holder_of(doc, gate, token) in granted], undo
    return [], undo


def _taking(gate: str, keys: list[str], now: int, limit: int, upsert: bool = True) -> dict[str, Any]:
    update: dict[str, Any] = {
        "$inc": {"held": len(keys)},
        "$set": {**{f"holders.{key}": now for key in keys}, "limit": limit},
    }
    if upsert:
        update["$setOnInsert"] = {**_meta(gate), "wake_ms": gates.NEVER}
    return update


def _new_gate(gate: str) -> dict[str, Any]:
    return {**_meta(gate), "held": 0, "holders": {}, "wake_ms": gates.NEVER}


async def _take_rate(
    gate: str, rate: RateLimit, wanted: int, now: int
) -> tuple[int, Callable[[dict[str, Any]], dict[str, Any]]]:
    """How many of `wanted` claims the rate allows now, taken (compare and set on `tat_us`)."""
    step = gates.interval_us(rate)

    def undo(_doc: dict[str, Any]) -> dict[str, Any]:
        return {"do": {"$inc": {"tat_us": -step}}}

    for _ in range(_TRIES):
        doc = await _gates().find_one({"_id": gate}, {"tat_us": 1})
        tat = int(doc.get("tat_us", 0)) if doc is not None else 0
        granted, new_tat = gates.rate_take(tat, now * 1000, rate, wanted)
        if not granted:
            return 0, undo
        update: dict[str, Any] = {
            "$set": {"tat_us": new_tat, "per_second": rate.per_second, "burst": rate.burst}
        }
        try:
            if doc is None:
                update["$setOnInsert"] = {**_meta(gate), "wake_ms": gates.NEVER}
                await _gates().update_one({"_id": gate, "tat_us": tat}, update, upsert=True)
                return granted, undo
            result = await _gates().update_one({"_id": gate, "tat_us": tat}, update)
        except DuplicateKeyError:
            continue  # made by another claim just now: read it
        if result.modified_count:
            return granted, undo
    return 0, undo


# ---------------------------------------------------------------- holders that died


async def _drop_dead_holders(gate: str, holders: dict[str, int], now: int) -> int:
    """Remove the holders of a full gate that no longer hold: a state not QUEUED under that claim
    any more (or whose lease ran out), a run that has ended. Slots taken in the last
    FRESH_HOLD_MS are left alone (their claim may still be writing). How many were removed."""
    old = {key: at for key, at in holders.items() if now - int(at) >= gates.FRESH_HOLD_MS}
    if not old:
        return 0
    dead: list[str] = []
    by_state = {key: gates.holder_state(key) for key in old}
    state_ids = [
        ObjectId(pair[0]) for pair in by_state.values() if pair is not None and ObjectId.is_valid(pair[0])
    ]
    states = {
        str(doc["_id"]): doc async for doc in State.get_motor_collection().find({"_id": {"$in": state_ids}})
    }
    run_ids = {key: key[len("run_") :] for key, pair in by_state.items() if pair is None}
    runs = {
        gates.run_holder(doc["run_id"]): doc
        async for doc in Run.get_motor_collection().find(
            {"run_id": {"$in": list(run_ids.values())}}, {"run_id": 1, "status": 1}
        )
    }
    for key, pair in by_state.items():
        if pair is None:
            run = runs.get(key)
            if run is None or run.get("status") not in _OPEN_RUN:
                dead.append(key)
            continue
        state = states.get(pair[0])
        holds = (
            state is not None
            and state.get("status") == StateStatus.QUEUED.value
            and state.get("claim_token") == pair[1]
            and (state.get("lease_expires_at") or 0) >= now
        )
        if not holds:
            dead.append(key)
    removed = 0
    for key in dead:
        result = await _gates().update_one(
            {"_id": gate, f"holders.{key}": old[key]},
            {"$unset": {f"holders.{key}": ""}, "$inc": {"held": -1}},
        )
        removed += result.modified_count
    if removed:
        log.warning("gate_holders_dropped", gate=gate.replace(gates.SEP, "/"), dropped=removed)
    return removed


# ---------------------------------------------------------------- parking, and letting back


async def _park(ctx: AppContext, gate: str, setting: Any, refused: list[dict[str, Any]], now: int) -> int:
    """Park the states a gate held back. The gate is told first that states wait at it (when to
    look again, and that one parked just now), so a crash after the park leaves nothing that no
    wake will find. After parking at a slot gate, look at it once more: a slot given back
    between the refusal and the park found nobody parked to let in."""
    if isinstance(setting, RateLimit):
        doc = await _gates().find_one({"_id": gate}, {"tat_us": 1})
        wake = gates.rate_next_ms(int((doc or {}).get("tat_us", 0)), now * 1000, setting)
    else:
        wake = now + RECHECK_MS
    await _gates().update_one({"_id": gate}, {"$min": {"wake_ms": wake}, "$max": {"parked_ms": now}})
    moved = await queries.park([(doc, gates.park_key(gate, doc.get("ready"))) for doc in refused])
    if not isinstance(setting, RateLimit):
        doc = await _gates().find_one({"_id": gate}, {"held": 1})
        if doc is not None and int(doc.get("held", 0)) < setting.limit:
            await wake_gate(gate, ctx=ctx)
    return moved


async def wake_gate(gate: str, *, ctx: AppContext | None = None) -> int:
    """Let back into `ready` as many of the states parked at `gate` as it allows now (all, when
    its limit was taken off), first parked first; set when to look again. How many it let back."""
    doc = await _gates().find_one({"_id": gate})
    if doc is None:
        return 0
    now = now_ms()
    setting = await setting_of(ctx, gate)
    if setting is None:
        room = _UNPARK_MAX
    elif isinstance(setting, RateLimit):
        room = gates.rate_take(int(doc.get("tat_us", 0)), now * 1000, setting, _UNPARK_MAX)[0]
    else:
        held = int(doc.get("held", 0))
        if held >= setting.limit:
            held -= await _drop_dead_holders(gate, doc.get("holders") or {}, now)
        room = gates.free_slots(setting.limit, held)
    parked = await queries.parked_first(gates.park_range(gate), room + 1)
    moved = await queries.unpark(parked[:room]) if room else 0
    if len(parked) <= room:
        # None left, as far as this read saw: no need to look again, unless a claim parked
        # something lately (it may be writing the park still: look once more after it).
        recent = int(doc.get("parked_ms", 0)) + RECHECK_MS
        wake = recent if recent > now else gates.NEVER
    elif isinstance(setting, RateLimit):
        wake = gates.rate_next_ms(int(doc.get("tat_us", 0)), now * 1000, setting)
    else:
        wake = now + RECHECK_MS
    # From what was read only: a park meanwhile set an earlier time, which stays.
    await _gates().update_one({"_id": gate, "wake_ms": doc.get("wake_ms")}, {"$set": {"wake_ms": wake}})
    if moved and ctx is not None:
        for namespace in {state["namespace_name"] for state in parked[:room]}:
            ctx.work.notify(namespace)
    return moved


async def wake_due(ctx: AppContext | None) -> int:
    """Look at the gates whose time to look again has come (on the claim path and in the
    recovery pass); how many states they let back."""
    now = now_ms()
    moved = 0
    cursor = _gates().find({"wake_ms": {"$lte": now}}, {"_id": 1}).limit(_WAKE_BATCH)
    for gate in [doc["_id"] async for doc in cursor]:
        try:
            moved += await wake_gate(gate, ctx=ctx)
        except Exception:
            log.exception("gate_wake_failed", gate=gate.replace(gates.SEP, "/"))
    return moved


# ---------------------------------------------------------------- giving slots back


async def release(ctx: AppContext | None, state: State) -> None:
    """`state`'s attempt ended (reported, failed, timed out, cancelled, put back, or its lease ran
    out): give back its concurrency slots, and let in what waits for them."""
    if state.claim_token is None:
        return
    for gate in state.gates:
        if gates.parse(gate).kind != gates.CONCURRENCY:
            continue
        await _give_back_slot(ctx, gate, gates.holder(str(state.id), state.claim_token))


async def release_run(run_id: str, gate: str) -> None:
    """A run ended: give back its slot of its graph's run concurrency, and start what waits."""
    await _give_back_slot(None, gate, gates.run_holder(run_id))


async def _give_back_slot(ctx: AppContext | None, gate: str, key: str) -> None:
    doc = await _gates().find_one_and_update(
        {"_id": gate, f"holders.{key}": {"$exists": True}},
        {"$unset": {f"holders.{key}": ""}, "$inc": {"held": -1}},
        projection={"wake_ms": 1},
        return_document=ReturnDocument.AFTER,
    )
    if doc is not None and int(doc.get("wake_ms", gates.NEVER)) < gates.NEVER:
        await wake_gate(gate, ctx=ctx)
