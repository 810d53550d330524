"""The scenarios: a run brought to the point of a race (setup, ungated), the 2-3 operations
that race there, and how the run ends when nothing goes wrong (the clean run's status and the
outputs of its successful states), for the checks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from tests.factories import NO_RETRY, Json
from tests.simulation import operations as op
from tests.simulation.graphs import (
    ALL_NODES,
    CHAIN_NODES,
    FAN_NODES,
    ONE_RETRY,
    Worker,
    chain,
    clean_chain,
    clean_fan_in,
    fan_in,
    label,
)
from tests.simulation.operations import CLAIM_HEADER, Fixture, Op
from tests.simulation.record import Attempt, Record
from tests.simulation.world import World

Setup = Callable[[World], Awaitable[Fixture]]
Repair = Callable[[World, Fixture, Record], Awaitable[None]]


@dataclass(frozen=True)
class JoinCheck:
    """A join's collected input: `join.inputs[input]` is `${{ branch.outputs.field[*] }}`."""

    join: str
    input: str
    branch: str
    field: str


FAN_JOIN = JoinCheck("sum", "values", "square", "sq")


@dataclass(frozen=True)
class Scenario:
    name: str
    setup: Setup
    ops: tuple[Op, ...]
    clean_status: str  # how the run ends when it is not cancelled
    clean_results: dict[str, list[Any]]  # outputs of its successful states, by identifier
    repair: Repair | None = None  # played after the first drain, followed by another
    joins: tuple[JoinCheck, ...] = field(default=())
    create_after_cancel: bool = False  # after a cancel, also try SEED `states/create` into the run

    def __str__(self) -> str:
        return self.name


# ---------------------------------------------------------------- setups


async def _report(world: World, fx: Fixture, state: Json) -> None:
    outcome = fx.worker.run(state)
    path = "errored" if isinstance(outcome, str) else "executed"
    body: Json = {"error": outcome} if isinstance(outcome, str) else {"outputs": outcome}
    answer = await world.client.post(
        world.api.url(f"/state/{state['state_id']}/{path}"),
        json=body,
        headers={CLAIM_HEADER: state["claim_token"]},
    )
    assert answer.status_code == 200, f"setup: {path} {label(state)}: {answer.status_code} {answer.text}"


async def _work(world: World, fx: Fixture, hold: tuple[str, ...] = ()) -> None:
    """Claim and report everything runnable, keeping the states labelled in `hold` claimed."""
    while claimed := await world.api.claim(*ALL_NODES, batch_size=100):
        for state in claimed:
            if label(state) in hold:
                fx.held[label(state)] = state
            else:
                await _report(world, fx, state)
    for state in await world.api.run_states(fx.run_id):  # the latest state of each label
        fx.ids[label(state)] = state["id"]


def chain_run(hold: tuple[str, ...] = (), broken: tuple[str, ...] = ()) -> Setup:
    """A run of CHAIN worked until the `hold` states are claimed; `broken` ones fail, then are fixed."""

    async def setup(world: World) -> Fixture:
        await world.api.setup("chain", chain(), *CHAIN_NODES)
        fx = Fixture("chain", (await world.api.trigger("chain"))["run_id"], worker=Worker(set(broken)))
        await _work(world, fx, hold)
        fx.worker.broken.clear()
        return fx

    return setup


def seeded_run(hold: bool) -> Setup:
    """A run of CHAIN made by SEED `states/create` with one `c` state (x=seed), claimed if `hold`."""

    async def setup(world: World) -> Fixture:
        await world.api.setup("chain", chain(), *CHAIN_NODES)
        fx = Fixture("chain", "seeded-run")
        body = {"run_id": fx.run_id, "states": [{"identifier": "c", "inputs": {"x": "seed"}}]}
        await world.api.call("POST", "/graph/chain/states/create", body)
        if hold:
            await _work(world, fx, ("c",))
        return fx

    return setup


def fan_in_run(
    strategy: str, hold: tuple[str, ...] = (), broken: tuple[str, ...] = (), retry_policy: Json = NO_RETRY
) -> Setup:
    """A run of FAN_IN worked until the `hold` branches are claimed; `broken` ones fail, then are fixed."""

    async def setup(world: World) -> Fixture:
        await world.api.setup("fan", fan_in(strategy, retry_policy), *FAN_NODES)
        fx = Fixture("fan", (await world.api.trigger("fan"))["run_id"], worker=Worker(set(broken)))
        await _work(world, fx, hold)
        fx.worker.broken.clear()
        return fx

    return setup


async def _graph_only(world: World) -> Fixture:
    await world.api.setup("chain", chain(), *CHAIN_NODES)
    return Fixture("chain", "")


async def retry_cancelled_joins(world: World, fx: Fixture, record: Record) -> None:
    """The second step of a repair: retry the join that could not run (its branches are fixed)."""
    for state in await world.api.run_states(fx.run_id):
        if state["identifier"] == "sum" and state["status"] == "CANCELLED":
            answer = await world.client.post(
                world.api.url(f"/state/{state['id']}/manual-retry"), json={"fanout_id": "repair"}
            )
            record.attempts.append(Attempt("manual-retry of the cancelled join sum", op.REOPEN, answer))


# ---------------------------------------------------------------- the scenarios

CHAIN_FAILED_AT_B: dict[str, list[Any]] = {"a": clean_chain()["a"]}

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "chain_last_report_vs_cancel",
        chain_run(hold=("c",)),
        (op.executed("c"), op.cancel()),
        "SUCCESS",
        clean_chain(),
    ),
    Scenario(
        "chain_report_vs_cancel",
        chain_run(hold=("a",)),
        (op.executed("a"), op.cancel()),
        "SUCCESS",
        clean_chain(),
    ),
    Scenario(
        "chain_errored_vs_cancel",
        chain_run(hold=("b",)),
        (op.errored("b"), op.cancel()),
        "FAILED",
        CHAIN_FAILED_AT_B,
    ),
    Scenario(
        "chain_untokened_report_vs_recovery",
        chain_run(hold=("b",)),
        (op.executed("b", token=False), op.recovery()),
        "SUCCESS",
        clean_chain(),
    ),
    Scenario(
        "chain_manual_retry",
        chain_run(broken=("b",)),
        (op.manual_retry("b"),),
        "SUCCESS",
        clean_chain(),
    ),
    Scenario(
        "chain_manual_retry_vs_passes",
        chain_run(broken=("b",)),
        (op.manual_retry("b"), op.second_recovery(), op.recovery()),
        "SUCCESS",
        clean_chain(),
    ),
    Scenario(
        "chain_retry_vs_cancel_vs_worker",
        chain_run(broken=("b",)),
        (op.manual_retry("b"), op.cancel(), op.work()),
        "SUCCESS",
        clean_chain(),
    ),
    Scenario(
        "seed_create_vs_last_report",
        seeded_run(hold=True),
        (op.executed("c"), op.create_states("c", "fail")),
        "FAILED",
        {"c": [{"y": "seed+c"}]},
    ),
    Scenario(
        "seed_create_vs_cancel",
        seeded_run(hold=False),
        (op.cancel(), op.create_states("c", "more")),
        "SUCCESS",
        {"c": [{"y": "seed+c"}, {"y": "more+c"}]},
        create_after_cancel=True,
    ),
    Scenario(
        "idempotent_triggers",
        _graph_only,
        (op.trigger("same-key"), op.trigger("same-key")),
        "SUCCESS",
        clean_chain(),
    ),
    Scenario(
        "fan_in_last_branches",
        fan_in_run("ALL_SUCCESS", hold=("square[2]", "square[3]")),
        (op.executed("square[2]"), op.executed("square[3]")),
        "SUCCESS",
        clean_fan_in(),
        joins=(FAN_JOIN,),
    ),
    Scenario(
        # A branch's automatic retry against the last other branch: between the retried state
        # and its new attempt, the join must still see the branch going (found in CI: the join
        # ran on three of four squares).
        "fan_in_auto_retry_vs_last_branch",
        fan_in_run("ALL_SUCCESS", hold=("square[2]", "square[3]"), retry_policy=ONE_RETRY),
        (op.errored("square[2]"), op.executed("square[3]")),
        "SUCCESS",
        clean_fan_in(),
        joins=(FAN_JOIN,),
    ),
    Scenario(
        # An operator's retry of a failed branch against the last other branch, under ALL_DONE:
        # the last arrival may make the join from what it saw just before the retry reopened
        # the branch; that join must be made again from the repaired branch (join_epoch).
        "fan_in_manual_retry_vs_last_branch",
        fan_in_run("ALL_DONE", hold=("square[3]",), broken=("square[2]",)),
        (op.executed("square[3]"), op.manual_retry("square[2]")),
        "SUCCESS",
        clean_fan_in(),
        joins=(FAN_JOIN,),
    ),
    Scenario(
        "fan_in_branch_vs_recovery",
        fan_in_run("ALL_DONE", hold=("square[3]",)),
        (op.executed("square[3]"), op.recovery()),
        "SUCCESS",
        clean_fan_in(),
        joins=(FAN_JOIN,),
    ),
    Scenario(
        "fan_in_retry_failed",
        fan_in_run("ALL_SUCCESS", broken=("square[2]",)),
        (op.retry_failed(), op.recovery()),
        "SUCCESS",
        clean_fan_in(),
        joins=(FAN_JOIN,),
    ),
    Scenario(
        "fan_in_repair_then_join_retry",
        fan_in_run("ALL_SUCCESS", broken=("square[2]",)),
        (op.retry_failed(), op.recovery()),
        "SUCCESS",
        clean_fan_in(),
        repair=retry_cancelled_joins,
        joins=(FAN_JOIN,),
    ),
    Scenario(
        "fan_in_all_done_repair",
        fan_in_run("ALL_DONE", broken=("square[2]",)),
        (op.retry_failed(), op.recovery()),
        "SUCCESS",
        clean_fan_in(),
        joins=(FAN_JOIN,),
    ),
)
