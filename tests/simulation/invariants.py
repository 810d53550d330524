"""The invariants (docs: DESIGN.md 4b), checked at rest after each simulated schedule; each
returns the violations as messages a user would recognise.

- I1: the run's stored status, start, end and counts equal `expected_progress` of its states.
- I2: after a cancel answered 200, nothing of the run starts again and every try is a 409 naming
  the cancel; a cancel that loses to the run's end answers 409 and changes nothing.
- I3: each run end is stored, logged and counted once (a reopen allows one more).
- I4: a join ran with its branches' outputs as they are at rest, in fan-out order; a repaired
  run ends like a clean one.
- I5: nothing lost and nothing duplicated: no two states for one node instance, and a run that
  was not cancelled ends as the clean run does, with the same outputs.
Also: no answer is a 5xx and no operation raises.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import MutableMapping
from typing import Any

import httpx

from state_manager.db.documents import Run, State
from state_manager.domain.progress import Progress, StateFacts, expected_progress
from state_manager.domain.status import StateStatus
from tests.simulation.operations import REOPEN, REPORT, TRIGGER, Fixture
from tests.simulation.record import Record
from tests.simulation.scenarios import Scenario
from tests.simulation.scheduler import OpResult
from tests.simulation.world import World

Doc = dict[str, Any]


async def check(world: World, scenario: Scenario, fx: Fixture, record: Record) -> list[str]:
    violations = _answers(record)
    runs = await Run.get_motor_collection().find({}).sort("_id").to_list(None)
    violations += _triggers(record, runs)
    for run in runs:
        states = await State.get_motor_collection().find({"run_id": run["run_id"]}).sort("_id").to_list(None)
        progress = _progress(run, states)
        violations += at_rest(run, states, progress)
        violations += cancel_rules(world, run, record)
        violations += ends_once(world, run, record, progress)
        violations += joins(scenario, run, states)
        violations += nothing_lost(scenario, run, states, progress, abandoned=record.abandoned())
    counted, logged = world.runs_finished_counted(), len(world.events("run_finished"))
    if counted != logged:
        violations.append(
            f"I3: exosphere_runs_finished_total counted {counted:g} run ends, {logged} were logged"
        )
    return violations


def _progress(run: Doc, states: list[Doc]) -> Progress:
    facts = [
        StateFacts(
            StateStatus(s["status"]),
            owes_effect=s.get("pending_effect") is not None,
            claimed_ms=s.get("claimed_ms"),
        )
        for s in states
    ]
    return expected_progress(
        facts, cancelled=run.get("cancelled_at") is not None, seeded=run.get("seeded", False)
    )


def _name(state: Doc) -> str:
    n = state.get("inputs", {}).get("n")
    return f"{state['identifier']}{f'[{n}]' if n else ''} {state['status']}"


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text


def _answers(record: Record) -> list[str]:
    found = []
    for op, result in record.ops:
        if result.error is not None:
            found.append(f"{op.name} raised {type(result.error).__name__}: {result.error}")
        elif isinstance(result.value, httpx.Response) and result.value.status_code >= 500:
            found.append(f"{op.name} answered {result.value.status_code}: {result.value.text[:300]}")
    for attempt in record.attempts:
        response = attempt.response
        if attempt.kind == REPORT and not attempt.after_cancel and response and response.status_code != 200:
            found.append(f"{attempt.what} answered {response.status_code}: {_detail(response)}")
    return found


def _triggers(record: Record, runs: list[Doc]) -> list[str]:
    """Triggers with one Idempotency-Key start one run, and all answer with it."""
    answers = [r.value for op, r in record.ops if op.kind == TRIGGER and isinstance(r.value, httpx.Response)]
    if not answers:
        return []
    found = [f"a trigger answered {a.status_code}: {_detail(a)}" for a in answers if a.status_code != 200]
    run_ids = {a.json()["run_id"] for a in answers if a.status_code == 200}
    if len(run_ids) > 1 or len(runs) != 1:
        found.append(
            f"I5: triggers with one Idempotency-Key answered runs {sorted(run_ids)}; {len(runs)} stored"
        )
    return found


# ---------------------------------------------------------------- I1


def at_rest(run: Doc, states: list[Doc], expected: Progress) -> list[str]:
    rid = run["run_id"]
    found = []
    if expected.open:
        still = [
            _name(s)
            for s in states
            if s["status"] in ("CREATED", "QUEUED", "EXECUTED") or s.get("pending_effect")
        ]
        found.append(f"I1: run {rid} never came to rest: {expected.open} state(s) open: {still}")
    if run["status"] != expected.status.value:
        found.append(
            f"I1: run {rid} is stored {run['status']}, but its states make it {expected.status.value} "
            f"(states: {dict(sorted(expected.counts.items()))}, "
            f"cancelled: {run.get('cancelled_at') is not None})"
        )
    if (run.get("started_ms") is not None) != expected.started:
        started = run.get("started_ms")
        found.append(f"I1: run {rid} started_ms is {started}, but a state was claimed: {expected.started}")
    if (run.get("finished_ms") is not None) != expected.ended:
        found.append(
            f"I1: run {rid} finished_ms is {run.get('finished_ms')}, but it has ended: {expected.ended}"
        )
    if expected.ended and run.get("counts") != expected.counts:
        found.append(
            f"I1: run {rid} stores counts {dict(sorted(run.get('counts', {}).items()))}, "
            f"its states are {dict(sorted(expected.counts.items()))}"
        )
    return found


# ---------------------------------------------------------------- I2


def _is_cancel_refusal(response: httpx.Response | None) -> bool:
    return response is not None and response.status_code == 409 and "cancel" in _detail(response).lower()


def cancel_rules(world: World, run: Doc, record: Record) -> list[str]:
    rid = run["run_id"]
    found: list[str] = []
    accepted = record.cancels_answered(200)
    if accepted:
        cancel = min(accepted, key=lambda r: r.answered or 0)
        found += _cancel_lost_to_the_end(world, run, record, cancel)
        found += _tries_after_cancel(rid, record, cancel.answered or 0)
    if run.get("cancelled_at") is not None:
        found += _reports_refused_wrongly(rid, record)
    for _, result in record.ops:
        value = result.value
        refused = isinstance(value, httpx.Response) and value.status_code == 409
        if (
            refused
            and "/cancel" in str(value.request.url)
            and not accepted
            and ("already ended" not in _detail(value) or run["status"] == "CANCELLED")
        ):
            found.append(f"I2: a refused cancel ({_detail(value)}) left run {rid} {run['status']}")
    return found


def _cancel_lost_to_the_end(world: World, run: Doc, record: Record, cancel: OpResult) -> list[str]:
    rid, answered = run["run_id"], cancel.answered or 0
    assert isinstance(cancel.value, httpx.Response)
    ends = world.events("run_finished", run_id=rid)
    before = [e for e in ends if e["sim_step"] < answered and e["status"] != "CANCELLED"]
    if not before or _reopened_between(record, before[-1], answered):
        return []
    return [
        f"I2: cancel answered 200 ({cancel.value.json()}) after run {rid} had ended "
        f"{before[-1]['status']} (logged at step {before[-1]['sim_step']}): a cancel that loses to "
        f"the run's end must answer 409 and change nothing; the run is now {run['status']}"
    ]


def _tries_after_cancel(rid: str, record: Record, answered: int) -> list[str]:
    found = []
    for op, result in record.ops:
        late = result.started is not None and result.started > answered and op.kind in (REOPEN, REPORT)
        if op.kind == REPORT and result.name.endswith("(sent again)"):
            continue  # a repeat of a report whose replica died: it answers as the first did
        if not late or _claimed_nothing_of(result.value, rid):
            continue
        if isinstance(result.value, httpx.Response) and not _is_cancel_refusal(result.value):
            found.append(
                f"I2: {op.name} after the cancel answered 200 answered {result.value.status_code}: "
                f"{_detail(result.value)[:200]} (expected 409 naming the cancel)"
            )
    for attempt in record.attempts:
        if not attempt.after_cancel:
            continue
        if attempt.kind == "claim":
            mine = [f"{s['identifier']} {s['state_id']}" for s in attempt.claimed if s["run_id"] == rid]
            if mine:
                found.append(f"I2: {attempt.what}: a worker claimed {mine} of the cancelled run {rid}")
        elif not _is_cancel_refusal(attempt.response):
            assert attempt.response is not None
            found.append(
                f"I2: {attempt.what} answered {attempt.response.status_code}: "
                f"{_detail(attempt.response)[:200]} (expected 409 naming the cancel)"
            )
    return found


def _claimed_nothing_of(response: Any, rid: str) -> bool:
    if not isinstance(response, httpx.Response) or not str(response.request.url).endswith("/states/enqueue"):
        return False
    return response.status_code == 200 and all(s["run_id"] != rid for s in response.json()["states"])


def _reports_refused_wrongly(rid: str, record: Record) -> list[str]:
    """A worker reporting a state its run's cancel took from it gets a 409 naming the cancel."""
    found = []
    responses = [(op.name, r.value) for op, r in record.ops if op.kind == REPORT]
    responses += [(a.what, a.response) for a in record.attempts if a.kind == REPORT]
    for what, response in responses:
        if isinstance(response, httpx.Response) and response.status_code == 400:
            found.append(
                f"I2: {what} in the cancelled run {rid} answered 400: {_detail(response)} "
                "(expected 409 naming the cancel)"
            )
    return found


def _reopened_between(record: Record, end: MutableMapping[str, Any], answered: int) -> bool:
    """Whether a reopening call (one that answered 200, or died) ran between the end and the answer."""
    return any(
        op.kind == REOPEN
        and r.started is not None
        and r.started < answered
        and (r.answered is None or r.answered > end["sim_step"])
        and (r.crashed or (isinstance(r.value, httpx.Response) and r.value.status_code == 200))
        for op, r in record.ops
    )


# ---------------------------------------------------------------- I3


def ends_once(world: World, run: Doc, record: Record, expected: Progress) -> list[str]:
    rid = run["run_id"]
    ends = world.events("run_finished", run_id=rid)
    statuses = [e["status"] for e in ends]
    found = []
    # Every reopening bumps the run's revision (and so does the cancel, which is not a reopen).
    allowed = 1 + run.get("revision", 0) - (run.get("cancelled_at") is not None)
    if len(ends) > allowed:
        found.append(
            f"I3: run {rid} ended {len(ends)} times (logged {statuses}) with {allowed - 1} reopen(s): "
            "each end is stored, logged and counted once"
        )
    if expected.ended and not ends:
        found.append(f"I3: run {rid} ended {run['status']}, but its end was never logged")
    if ends and expected.ended and ends[-1]["status"] != run["status"]:
        found.append(f"I3: run {rid} is stored {run['status']}, its last logged end is {ends[-1]['status']}")
    return found


# ---------------------------------------------------------------- I4


def _fan_order(state: Doc) -> list[int]:
    return [*state.get("fanout_path", []), state.get("output_index", 0)]


def joins(scenario: Scenario, run: Doc, states: list[Doc]) -> list[str]:
    found = []
    for spec in scenario.joins:
        branches = sorted((s for s in states if s["identifier"] == spec.branch), key=_fan_order)
        outputs = [s["outputs"].get(spec.field) for s in branches if s["status"] == "SUCCESS"]
        ran = [s for s in states if s["identifier"] == spec.join and s["status"] == "SUCCESS"]
        for join in ran:
            collected = json.loads(join["inputs"][spec.input])
            if collected != outputs:
                found.append(
                    f"I4: join {spec.join} ran with {spec.branch}.{spec.field} = {collected}, but its "
                    f"branches' outputs are {outputs} (run {run['status']})"
                )
        settled = [s for s in branches if s["status"] != "RETRY_CREATED"]
        all_green = settled and all(s["status"] == "SUCCESS" for s in settled)
        if all_green and not ran and run.get("cancelled_at") is None:
            last = [s for s in states if s["identifier"] == spec.join]
            why = f"{last[-1]['status']}: {last[-1].get('error')}" if last else "never created"
            found.append(
                f"I4: every {spec.branch} branch succeeded, but join {spec.join} never ran ({why}); "
                f"the run is {run['status']}"
            )
    return found


# ---------------------------------------------------------------- I5


def _instance(state: Doc) -> tuple[Any, ...]:
    """A node instance: what one logical execution of a node is known by."""
    return (
        state["identifier"],
        tuple(sorted(state.get("parents", {}).items())),
        tuple(state.get("fanout_path", [])),
        state.get("output_index", 0),
        state.get("retry_count", 0),
        state.get("manual_retry_fanout_id", ""),
        state.get("join_generation", 0),  # a repair makes a join again: its next generation
        json.dumps(state.get("inputs", {}), sort_keys=True) if not state.get("parents") else "",
    )


def _results(states: list[Doc]) -> dict[str, list[str]]:
    results: dict[str, list[str]] = {}
    for state in states:
        if state["status"] == "SUCCESS":
            results.setdefault(state["identifier"], []).append(json.dumps(state["outputs"], sort_keys=True))
    return {k: sorted(v) for k, v in sorted(results.items())}


def nothing_lost(
    scenario: Scenario, run: Doc, states: list[Doc], expected: Progress, *, abandoned: bool = False
) -> list[str]:
    """No duplicates; and, unless a call died and its client could not send it again (so it may
    or may not have happened), the run ends as a clean run does."""
    rid = run["run_id"]
    found = []
    keys = Counter(s["spawn_key"] for s in states)
    instances = Counter(_instance(s) for s in states)
    for key, n in keys.items():
        if n > 1:
            found.append(f"I5: {n} states of run {rid} share spawn_key {key}")
    for instance, n in instances.items():
        if n > 1:
            found.append(f"I5: {n} states of run {rid} for one node instance {instance[:4]}")
    if run.get("cancelled_at") is not None or expected.open or abandoned:
        return found
    if expected.status.value != scenario.clean_status:
        found.append(
            f"I5: run {rid} ended {expected.status.value} (stored {run['status']}); a clean run ends "
            f"{scenario.clean_status}"
        )
    clean = {
        k: sorted(json.dumps(o, sort_keys=True) for o in v) for k, v in sorted(scenario.clean_results.items())
    }
    got = _results(states)
    if got != clean:
        found.append(f"I5: run {rid}'s successful outputs are {got}; a clean run's are {clean}")
    return found
