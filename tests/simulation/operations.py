"""The operations a scenario interleaves, each one call a user, a worker or a replica makes.

HTTP operations return the `httpx.Response` (so the checks can read status codes and
messages); the recovery passes are service calls, as a replica's loop makes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from state_manager.services.recovery import recover_once
from tests.factories import Json
from tests.simulation.graphs import Worker
from tests.simulation.world import World

CLAIM_HEADER = "x-exosphere-claim-token"


@dataclass
class Fixture:
    """What a scenario's setup left for its operations: the run, the graph, and the states its
    workers hold (claimed, by label) or that failed (by label)."""

    graph: str
    run_id: str
    held: dict[str, Json] = field(default_factory=dict)  # label -> the claimed state (enqueue item)
    ids: dict[str, str] = field(default_factory=dict)  # label -> state id of other states of note
    worker: Worker = field(default_factory=Worker)


Call = Callable[[World, Fixture], Awaitable[Any]]

# What an operation is, for the checks: a report, a cancel, something that may reopen the run
# or start work in it (after a cancel it must be refused), or a replica's pass.
REPORT, CANCEL, REOPEN, TRIGGER, PASS = "report", "cancel", "reopen", "trigger", "pass"


@dataclass(frozen=True)
class Op:
    name: str
    kind: str
    call: Call
    # Whether a client whose call died sends it again. SEED `states/create` has no idempotency
    # key: each call adds states, so a client cannot safely send it twice (upstream's contract).
    resend: bool = True

    def __str__(self) -> str:
        return self.name


def _url(world: World, suffix: str) -> str:
    return world.api.url(suffix)


def executed(held: str, *, token: bool = True) -> Op:
    async def call(world: World, fx: Fixture) -> httpx.Response:
        state = fx.held[held]
        outputs = fx.worker.run(state)
        assert not isinstance(outputs, str), f"{held} is set up to succeed"
        headers = {CLAIM_HEADER: state["claim_token"]} if token else {}
        return await world.client.post(
            _url(world, f"/state/{state['state_id']}/executed"), json={"outputs": outputs}, headers=headers
        )

    return Op(f"executed({held}{'' if token else ', no token'})", REPORT, call)


def errored(held: str, error: str = "boom") -> Op:
    async def call(world: World, fx: Fixture) -> httpx.Response:
        state = fx.held[held]
        headers = {CLAIM_HEADER: state["claim_token"]}
        return await world.client.post(
            _url(world, f"/state/{state['state_id']}/errored"), json={"error": error}, headers=headers
        )

    return Op(f"errored({held})", REPORT, call)


def work() -> Op:
    """A worker: claims what is due, and reports each state it got executed (the answer of its
    last report, or of the claim if it got nothing)."""

    async def call(world: World, fx: Fixture) -> httpx.Response:
        body = {"nodes": ["Alpha", "Beta", "Gamma"], "batch_size": 10, "wait_ms": 0}
        answer = await world.client.post(_url(world, "/states/enqueue"), json=body)
        for state in answer.json()["states"]:
            fx.held[f"worker:{state['identifier']}"] = state
            outputs = fx.worker.run(state)
            answer = await world.client.post(
                _url(world, f"/state/{state['state_id']}/executed"),
                json={"outputs": outputs if not isinstance(outputs, str) else [{}]},
                headers={CLAIM_HEADER: state["claim_token"]},
            )
        return answer

    return Op("worker", REPORT, call)


def cancel() -> Op:
    async def call(world: World, fx: Fixture) -> httpx.Response:
        return await world.client.post(_url(world, f"/run/{fx.run_id}/cancel"))

    return Op("cancel", CANCEL, call)


def manual_retry(target: str, fanout_id: str = "operator-retry") -> Op:
    async def call(world: World, fx: Fixture) -> httpx.Response:
        return await world.client.post(
            _url(world, f"/state/{fx.ids[target]}/manual-retry"), json={"fanout_id": fanout_id}
        )

    return Op(f"manual-retry({target})", REOPEN, call)


def retry_failed() -> Op:
    async def call(world: World, fx: Fixture) -> httpx.Response:
        return await world.client.post(_url(world, f"/run/{fx.run_id}/retry-failed"))

    return Op("retry-failed", REOPEN, call)


def create_states(identifier: str, x: str) -> Op:
    async def call(world: World, fx: Fixture) -> httpx.Response:
        body = {"run_id": fx.run_id, "states": [{"identifier": identifier, "inputs": {"x": x}}]}
        return await world.client.post(_url(world, f"/graph/{fx.graph}/states/create"), json=body)

    return Op(f"states/create({identifier}, x={x})", REOPEN, call, resend=False)


def trigger(key: str) -> Op:
    async def call(world: World, fx: Fixture) -> httpx.Response:
        headers = {"Idempotency-Key": key}
        return await world.client.post(_url(world, f"/graph/{fx.graph}/trigger"), json={}, headers=headers)

    return Op(f"trigger(key={key})", TRIGGER, call)


async def _start_pass() -> None:
    """A replica's pass reads the clock 2 ms after it starts (the scheduler starts it): every
    write made before is then stale (grace 0) whatever millisecond it was made in, so the pass
    sees the same on every replay."""
    await asyncio.sleep(0.002)


def recovery() -> Op:
    async def call(world: World, fx: Fixture) -> Any:
        await _start_pass()
        return await recover_once(world.ctx)

    return Op("recovery", PASS, call)


def second_recovery() -> Op:
    """Another replica's recovery pass at the same time (each replica runs its own)."""

    async def call(world: World, fx: Fixture) -> Any:
        await _start_pass()
        return await recover_once(world.ctx)

    return Op("recovery (another replica)", PASS, call)
