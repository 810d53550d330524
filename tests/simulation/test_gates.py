"""Flow-control gates under interleaving and crashes (issue 18, services/gates.py).

Two or three operations race at store-call boundaries (the scheduler of this tier): claims of a
limited node by two workers (two replicas: nothing is shared between them but the store), a
report that gives a slot back, a cancel. Every schedule within one preemption, a crash at each
boundary of the default schedule, and seeded random schedules are checked for:

- safety: the workers' claims in the race hold no more states than the limit allows (run
  concurrency: no more runs started), and at the end of the race the store holds no more;
- no lost wake-up: a state held back while a slot was being given back is claimable right after
  the race, with no time passing (no sweep, no recovery);
- liveness: once time passes (slots taken by a crashed claim count as old, leases run out,
  gates are looked at), a worker drains every run to SUCCESS, never over the limit.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from state_manager.db.documents import FlowGate, Run, State
from state_manager.domain import gates
from state_manager.services.recovery import recover_once
from tests.factories import Json, fixed_retry, graph, node, template
from tests.simulation.harness import env_int
from tests.simulation.operations import CLAIM_HEADER
from tests.simulation.scheduler import Chooser, Crash, Decision, Scheduler, next_prefix
from tests.simulation.world import World, new_app, open_world

# Schedules per race within the preemption bound (SIM_GATE_CAP) and random schedules
# (SIM_SAMPLES): sized for the suite's time; raise them to look further. Crashes: every boundary.
CAP = env_int("SIM_GATE_CAP", 8)
SAMPLES = env_int("SIM_SAMPLES", 2)
LIMIT = 1
RETRIES = fixed_retry(5, 1)  # a claim whose answer a crash lost is re-delivered when its lease ends


@dataclass
class Race:
    name: str
    body: Json  # the graph (node Alpha, maybe Beta)
    runs: int
    held: int  # states claimed (and kept) before the race
    ops: tuple[str, ...]  # "claim", "report" (the first held state), "cancel" (its run)
    runs_limited: bool = False  # the limit is the graph's run concurrency, not the node's


def _limited(**setting: Any) -> Json:
    return graph({**template("a", "Alpha", {"x": "go"}), **setting}, retry_policy=RETRIES)


def _run_limited() -> Json:
    body = graph(
        template("a", "Alpha", {"x": "go"}, ["b"]),
        template("b", "Beta", {"x": "${{ a.outputs.y }}"}),
        retry_policy=RETRIES,
    )
    return {**body, "concurrency": {"limit": LIMIT}}


SLOTS = _limited(concurrency={"limit": LIMIT})
RATE = _limited(rate_limit={"per_second": 0.001, "burst": LIMIT})

RACES = [
    Race("two_claims", SLOTS, runs=3, held=0, ops=("claim", "claim")),
    Race("claim_vs_report", SLOTS, runs=3, held=1, ops=("claim", "report")),
    Race("claims_vs_report", SLOTS, runs=3, held=1, ops=("claim", "claim", "report")),
    Race("claim_vs_cancel", SLOTS, runs=3, held=1, ops=("claim", "cancel")),
    Race("two_claims_rate", RATE, runs=3, held=0, ops=("claim", "claim")),
    Race("two_claims_runs", _run_limited(), runs=3, held=0, ops=("claim", "claim"), runs_limited=True),
    Race("run_end_vs_claim", _run_limited(), runs=3, held=1, ops=("claim", "report"), runs_limited=True),
]


@dataclass
class Fx:
    runs: list[str]
    held: list[Json]


async def _claim(world: World, *nodes: str, batch: int = 10) -> list[Json]:
    body = {"nodes": list(nodes or ("Alpha", "Beta")), "batch_size": batch, "wait_ms": 0}
    answer = await world.client.post(world.api.url("/states/enqueue"), json=body)
    assert answer.status_code == 200, answer.text
    states: list[Json] = answer.json()["states"]
    return states


async def _report(world: World, state: Json) -> httpx.Response:
    return await world.client.post(
        world.api.url(f"/state/{state['state_id']}/executed"),
        json={"outputs": [{"y": "done"}]},
        headers={CLAIM_HEADER: state["claim_token"]},
    )


async def _setup(world: World, race: Race) -> Fx:
    await world.api.setup("g", race.body, node("Alpha"), node("Beta"))
    runs = [str((await world.api.trigger("g"))["run_id"]) for _ in range(race.runs)]
    held: list[Json] = []
    if race.held:
        # Only what it holds: the others stay due, so a claim in the race meets the full gate.
        held = await _claim(world, "Alpha", batch=race.held)
        assert len(held) == race.held
    return Fx(runs, held)


def _operation(world: World, fx: Fx, kind: str) -> Callable[[], Awaitable[Any]]:
    async def claim() -> list[Json]:
        return await _claim(world, "Alpha")

    async def report() -> httpx.Response:
        return await _report(world, fx.held[0])

    async def cancel() -> httpx.Response:
        return await world.client.post(world.api.url(f"/run/{fx.held[0]['run_id']}/cancel"))

    return {"claim": claim, "report": report, "cancel": cancel}[kind]


async def _in_flight(race: Race) -> int:
    """What the store holds now against the limit: QUEUED states of Alpha, or runs started."""
    if race.runs_limited:
        return await Run.get_motor_collection().count_documents({"status": "RUNNING"})
    return await State.get_motor_collection().count_documents({"node_name": "Alpha", "status": "QUEUED"})


async def _time_passes(world: World, monkey: pytest.MonkeyPatch) -> None:
    """Slots taken moments ago count as old, leases run out, every gate is due a look."""
    monkey.setattr(gates, "FRESH_HOLD_MS", 0)
    await State.get_motor_collection().update_many({"status": "QUEUED"}, {"$set": {"lease_expires_at": 1}})
    await FlowGate.get_motor_collection().update_many({}, {"$set": {"tat_us": 0}})  # rates allow again
    await FlowGate.get_motor_collection().update_many(
        {"wake_ms": {"$lt": gates.NEVER}}, {"$set": {"wake_ms": 0}}
    )
    for _ in range(2):
        await asyncio.sleep(0.002)
        await recover_once(world.ctx)


async def _drain(world: World, race: Race, violations: list[str], monkey: pytest.MonkeyPatch) -> None:
    """A worker runs whatever is runnable; when nothing is, time passes (once more at most)."""
    idle = 0
    for _ in range(30):
        claimed = await _claim(world)
        if await _in_flight(race) > LIMIT:
            violations.append(f"drain: {await _in_flight(race)} in flight, over the limit of {LIMIT}")
        if not claimed:
            if idle == 2:
                return
            idle += 1
            await _time_passes(world, monkey)
            continue
        idle = 0
        for state in claimed:
            await _report(world, state)
    violations.append("drain: the runs did not come to rest")


_APPS: dict[str, FastAPI] = {}


async def simulate(
    race: Race, choices: list[int] | None = None, seed: int | None = None, crash: Crash | None = None
) -> tuple[list[str], list[Decision], list[int]]:
    violations: list[str] = []
    if "app" not in _APPS:
        _APPS["app"] = new_app()  # one app for every schedule, a new store each time
    application = _APPS["app"]
    with pytest.MonkeyPatch.context() as monkey:
        async with open_world(application) as world:
            fx = await _setup(world, race)
            scheduler = Scheduler(
                Chooser(choices or [], random.Random(seed) if seed is not None else None), crash
            )
            world.clock = lambda: scheduler.step
            ops = [(kind, functools.partial(_operation(world, fx, kind))) for kind in race.ops]
            results = await scheduler.run(ops)
            claimed = [s for r in results if r.name == "claim" and isinstance(r.value, list) for s in r.value]
            errors = [f"{r.name}: {r.error!r}" for r in results if r.error is not None]
            violations += errors
            before = race.held - sum(
                1
                for r in results
                if r.name in ("report", "cancel") and r.value is not None and r.value.status_code == 200
            )
            started = len({s["run_id"] for s in claimed}) if race.runs_limited else len(claimed)
            if started + max(0, before) > LIMIT:
                violations.append(
                    f"the race's claims got {started} with {before} held: over the limit of {LIMIT}"
                )
            if await _in_flight(race) > LIMIT:
                violations.append(f"after the race the store holds {await _in_flight(race)}, over the limit")
            crashed = any(r.crashed for r in results)
            for state in claimed if not crashed else []:
                await _report(world, state)
            if not crashed and "rate" not in race.name:
                # No time passes: a slot given back in the race lets the next state in at once.
                if race.runs_limited:
                    for state in await _claim(world, "Beta"):
                        await _report(world, state)
                if await _in_flight(race) == 0:
                    next_ones = await _claim(world, "Alpha")
                    waiting = await Run.get_motor_collection().count_documents({"status": "PENDING"})
                    if not next_ones and waiting:
                        violations.append("lost wake-up: a slot is free, yet nothing waiting can be claimed")
                    for state in next_ones:
                        await _report(world, state)
            await _drain(world, race, violations, monkey)
            ended = [doc["status"] async for doc in Run.get_motor_collection().find({}, {"status": 1})]
            if any(status not in ("SUCCESS", "CANCELLED") for status in ended):
                violations.append(f"runs not ended at rest: {ended}")
    return violations, scheduler.decisions, [r.calls for r in results]


def _fail_on(race: Race, outcomes: list[tuple[str, list[str]]]) -> None:
    bad = [(line, v) for line, v in outcomes if v]
    if bad:
        shown = "\n".join(f"{race.name} {line}: {v}" for line, v in bad[:8])
        pytest.fail(f"{len(bad)} of {len(outcomes)} schedules broke a rule:\n{shown}", pytrace=False)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("race", RACES, ids=lambda race: race.name)
async def test_every_schedule_within_one_preemption(race: Race) -> None:
    outcomes = []
    prefix: list[int] | None = []
    while prefix is not None and len(outcomes) < CAP:
        violations, decisions, _ = await simulate(race, prefix)
        outcomes.append((",".join(map(str, prefix)) or "-", violations))
        prefix = next_prefix(decisions, 1)
    _fail_on(race, outcomes)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("race", RACES, ids=lambda race: race.name)
async def test_a_crash_at_every_boundary(race: Race) -> None:
    violations, _, calls = await simulate(race)
    outcomes = [("-", violations)]
    for crash in [Crash(op, call) for op, count in enumerate(calls) for call in range(1, count + 1)]:
        outcomes.append((f"- {crash}", (await simulate(race, crash=crash))[0]))
    _fail_on(race, outcomes)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("race", RACES, ids=lambda race: race.name)
async def test_seeded_random_schedules(race: Race) -> None:
    outcomes = []
    for seed in range(SAMPLES):
        rng = random.Random(f"{race.name}:{seed}")
        crash = Crash(rng.randrange(len(race.ops)), rng.randint(1, 12)) if rng.random() < 0.5 else None
        outcomes.append((f"seed {seed} {crash or '-'}", (await simulate(race, seed=seed, crash=crash))[0]))
    _fail_on(race, outcomes)
