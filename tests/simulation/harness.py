"""One simulated schedule, end to end, and the ways to choose schedules.

`simulate(scenario, choices, seed, crash)`:
1. a fresh server; the scenario's setup (ungated) brings a run to the point of the race;
2. the scenario's operations run interleaved by the scheduler (choices, then a seeded random
   generator or the default), with the crash if one is given;
3. a client whose call died with its replica sends it again (a recovery pass is not
   sent again: the next pass does its work);
4. recovery passes until nothing changes; after a cancel that answered 200, a user and a worker
   try again to start work in the run (every try must be refused); the drain: a worker claims
   and reports whatever is runnable, with recovery passes in between, until the run is at rest;
   then the scenario's repair, if any, and another drain;
5. the invariants (`invariants.py`), as a list of violations.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from state_manager.db.documents import State
from state_manager.services.recovery import RecoveryReport, recover_once
from tests.factories import Json
from tests.simulation import invariants
from tests.simulation.graphs import ALL_NODES
from tests.simulation.operations import CLAIM_HEADER, PASS, Fixture
from tests.simulation.record import Attempt, Record
from tests.simulation.scenarios import SCENARIOS, Scenario
from tests.simulation.scheduler import Chooser, Crash, Decision, OpResult, Scheduler, next_prefix
from tests.simulation.world import World, open_world

AFTER_THE_RACE = 10**9  # the log step of everything after the interleaved operations


@dataclass
class Outcome:
    scenario: str
    choices: list[int]
    seed: int | None
    crash: Crash | None
    violations: list[str]
    decisions: list[Decision]
    calls: list[tuple[int, str]]
    op_calls: list[int]

    def replay(self) -> str:
        choices = ",".join(map(str, self.choices)) or "-"
        return f"python -m tests.simulation.replay '{self.scenario} {choices} {self.crash or '-'}'"

    def report(self) -> str:
        lines = "\n  ".join(self.violations)
        return f"{self.scenario}: {len(self.violations)} violation(s); replay with {self.replay()}\n  {lines}"


async def simulate(
    scenario: Scenario, choices: Sequence[int] = (), seed: int | None = None, crash: Crash | None = None
) -> Outcome:
    async with open_world() as world:
        fx = await scenario.setup(world)
        chooser = Chooser(choices, random.Random(seed) if seed is not None else None)
        scheduler = Scheduler(chooser, crash)
        world.clock = lambda: scheduler.step
        results = await scheduler.run(
            [(op.name, functools.partial(op.call, world, fx)) for op in scenario.ops]
        )
        world.clock = lambda: AFTER_THE_RACE
        record = Record(list(zip(scenario.ops, results, strict=True)))
        for op, result in list(record.ops):
            if result.crashed and op.kind != PASS and op.resend:
                again = OpResult(f"{op.name} (sent again)")
                again.value = await op.call(world, fx)
                again.started = again.answered = scheduler.step + 1
                record.ops.append((op, again))
        await recover(world)
        if record.cancels_answered(200):
            await _try_after_cancel(world, fx, record, scenario.create_after_cancel)
        await drain(world, fx, record)
        if scenario.repair is not None:
            await scenario.repair(world, fx, record)
            await drain(world, fx, record)
        violations = await invariants.check(world, scenario, fx, record)
    return Outcome(
        scenario.name,
        scheduler.choices,
        seed,
        crash,
        violations,
        scheduler.decisions,
        scheduler.calls,
        [result.calls for result in results],
    )


async def recover(world: World, passes: int = 6) -> None:
    """Recovery passes until one changes nothing."""
    for _ in range(passes):
        await asyncio.sleep(0.002)  # grace 0: everything written before now is stale
        report = await recover_once(world.ctx)
        if report == RecoveryReport():
            return


async def _expire_abandoned(world: World) -> bool:
    """Time passes until the leases of states nobody will report run out."""
    result = await State.get_motor_collection().update_many(
        {"status": "QUEUED"}, {"$set": {"lease_expires_at": 1}}
    )
    return bool(result.modified_count)


async def drain(world: World, fx: Fixture, record: Record, rounds: int = 40) -> None:
    """A worker runs whatever is runnable, with recovery passes in between, until nothing is."""
    cancelled = bool(record.cancels_answered(200))
    for _ in range(rounds):
        await recover(world)
        body = {"nodes": list(ALL_NODES), "batch_size": 100, "wait_ms": 0}
        answer = await world.client.post(world.api.url("/states/enqueue"), json=body)
        claimed: list[Json] = answer.json()["states"]
        if not claimed:
            if await _expire_abandoned(world):
                continue
            return
        record.attempts.append(Attempt("drain: claim", "claim", answer, claimed, after_cancel=cancelled))
        for state in claimed:
            await report(world, fx, state, record)
    raise AssertionError(f"the run did not come to rest in {rounds} rounds of the drain")


async def report(world: World, fx: Fixture, state: Json, record: Record) -> None:
    outcome = fx.worker.run(state)
    headers = {CLAIM_HEADER: state["claim_token"]}
    url = f"/state/{state['state_id']}/" + ("errored" if isinstance(outcome, str) else "executed")
    body: Any = {"error": outcome} if isinstance(outcome, str) else {"outputs": outcome}
    answer = await world.client.post(world.api.url(url), json=body, headers=headers)
    record.attempts.append(
        Attempt(f"drain: report {state['identifier']} {state['state_id']}", "report", answer)
    )


async def _try_after_cancel(world: World, fx: Fixture, record: Record, create: bool) -> None:
    """A cancel answered 200: an operator and a worker now try to start work in the run."""
    states = await world.api.run_states(fx.run_id)
    for state in states:
        if state["status"] in ("ERRORED", "CANCELLED", "NEXT_CREATED_ERROR", "TIMEDOUT"):
            answer = await world.client.post(
                world.api.url(f"/state/{state['id']}/manual-retry"), json={"fanout_id": "after-cancel"}
            )
            what = f"manual-retry of {state['identifier']} ({state['status']}) after the cancel"
            record.attempts.append(Attempt(what, "reopen", answer, after_cancel=True))
            if answer.status_code == 200:  # it started work: its worker runs it
                await _work_after_cancel(world, fx, record)
    answer = await world.client.post(world.api.url(f"/run/{fx.run_id}/retry-failed"))
    record.attempts.append(Attempt("retry-failed after the cancel", "reopen", answer, after_cancel=True))
    if not create:
        return
    identifier = "c" if fx.graph == "chain" else "start"
    body = {"run_id": fx.run_id, "states": [{"identifier": identifier, "inputs": {"x": "after-cancel"}}]}
    answer = await world.client.post(world.api.url(f"/graph/{fx.graph}/states/create"), json=body)
    record.attempts.append(
        Attempt("states/create into the run after the cancel", "reopen", answer, after_cancel=True)
    )


async def _work_after_cancel(world: World, fx: Fixture, record: Record) -> None:
    """A worker claims what the run offers; the operator cancels the run again (it still shows
    work going on); the worker reports."""
    body = {"nodes": list(ALL_NODES), "batch_size": 100, "wait_ms": 0}
    answer = await world.client.post(world.api.url("/states/enqueue"), json=body)
    claimed = answer.json()["states"]
    record.attempts.append(Attempt("claim after the cancel", "claim", answer, claimed, after_cancel=True))
    if not claimed:
        return
    again = await world.client.post(world.api.url(f"/run/{fx.run_id}/cancel"))
    record.attempts.append(Attempt("cancel again", "cancel-again", again))
    for state in claimed:
        outcome = fx.worker.run(state)
        headers = {CLAIM_HEADER: state["claim_token"]}
        answer = await world.client.post(
            world.api.url(f"/state/{state['state_id']}/executed"),
            json={"outputs": outcome if not isinstance(outcome, str) else [{}]},
            headers=headers,
        )
        what = f"report of {state['identifier']} (claimed after the cancel) after the run was cancelled again"
        record.attempts.append(Attempt(what, "report", answer, after_cancel=True))


# ---------------------------------------------------------------- choosing schedules


def scenario(name: str) -> Scenario:
    for candidate in SCENARIOS:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no scenario {name!r}: {[s.name for s in SCENARIOS]}")


def parse_replay(text: str) -> tuple[Scenario, list[int], Crash | None]:
    """`<scenario> <choices, comma-separated, or -> <crash op@call, or ->`."""
    name, choices, crash = text.split()
    return (
        scenario(name),
        ([] if choices == "-" else [int(c) for c in choices.split(",")]),
        Crash.parse(crash),
    )


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


async def explore(scenario: Scenario, max_preemptions: int | None, cap: int) -> list[Outcome]:
    """Every schedule of the scenario within `max_preemptions` (depth first), up to `cap`."""
    outcomes: list[Outcome] = []
    prefix: list[int] | None = []
    while prefix is not None and len(outcomes) < cap:
        outcome = await simulate(scenario, prefix)
        outcomes.append(outcome)
        prefix = next_prefix(outcome.decisions, max_preemptions)
    return outcomes


async def crash_everywhere(scenario: Scenario, cap: int, choices: Sequence[int] = ()) -> list[Outcome]:
    """The schedule `choices` with a crash at each boundary of each operation in turn (up to
    `cap` crashes, spread evenly over the boundaries)."""
    clean = await simulate(scenario, choices)
    points = [Crash(op, call) for op, calls in enumerate(clean.op_calls) for call in range(1, calls + 1)]
    step = max(1, -(-len(points) // cap))
    outcomes = [clean]
    for crash in points[::step]:
        outcomes.append(await simulate(scenario, choices, crash=crash))
    return outcomes


async def sample(scenario: Scenario, seeds: range, crash_rate: float = 0.5) -> list[Outcome]:
    """Seeded random schedules; about `crash_rate` of them with a crash at a random boundary."""
    outcomes = []
    for seed in seeds:
        rng = random.Random(f"{scenario.name}:{seed}")
        crash = None
        if rng.random() < crash_rate:
            op = rng.randrange(len(scenario.ops))
            crash = Crash(op, rng.randint(1, 12))  # past an operation's last call: no crash
        outcomes.append(await simulate(scenario, seed=seed, crash=crash))
    return outcomes
