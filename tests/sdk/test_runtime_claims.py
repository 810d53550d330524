"""Claim tokens and lease pacing: what the runtime sends about a state it claimed."""

from __future__ import annotations

import asyncio
import logging
from itertools import pairwise

import pytest

from exospherehost import BaseNode
from exospherehost._worker import lease_deadline
from exospherehost.runtime import BatchResult

from .conftest import RuntimeFactory
from .fake_server import FakeServer, Recorded
from .nodes import Fails, Greet, Prunes, Requeues, UsesSecret
from .test_runtime_lifecycle import Gate, wait_until

TOKEN_HEADER = "x-exosphere-claim-token"
FAR_PAST_MS = 0
FAR_FUTURE_MS = 4_000_000_000_000  # the year 2096


def state_calls(server: FakeServer) -> list[Recorded]:
    """Every request about one state (secrets, heartbeat, the reports)."""
    return [r for r in server.requests if r.route.startswith("state/")]


@pytest.mark.parametrize(
    ("node", "routes"),
    [
        (UsesSecret, ["/secrets", "/executed"]),
        (Prunes, ["/prune"]),
        (Requeues, ["/re-enqueue-after"]),
        (Fails, ["/errored"]),
    ],
)
async def test_every_call_about_a_claimed_state_carries_its_claim_token(
    server: FakeServer, make_runtime: RuntimeFactory, node: type[BaseNode], routes: list[str]
) -> None:
    server.secrets = {"api_token": "t0k3n"}
    server.add_state(node.__name__, {"message": "boom"}, claim_token="claim-1")

    await make_runtime(node).run_once()

    calls = state_calls(server)
    assert [r.route.removeprefix("state/s1") for r in calls] == routes
    assert [r.headers.get(TOKEN_HEADER) for r in calls] == ["claim-1"] * len(routes)


async def test_each_state_sends_its_own_claim_token(server: FakeServer, make_runtime: RuntimeFactory) -> None:
    first = server.add_state("Greet", {"name": "Ada"}, claim_token="claim-a")
    second = server.add_state("Greet", {"name": "Bob"}, claim_token="claim-b")

    await make_runtime(Greet).run_once()

    tokens = {r.route: r.headers.get(TOKEN_HEADER) for r in server.routes("/executed")}
    assert tokens == {f"state/{first}/executed": "claim-a", f"state/{second}/executed": "claim-b"}


async def test_states_without_a_claim_token_send_no_token_header(
    server: FakeServer, make_runtime: RuntimeFactory
) -> None:
    server.secrets = {"api_token": "t0k3n"}
    for node in (UsesSecret, Prunes, Requeues):
        server.add_state(node.__name__)
    server.add_state("Fails", {"message": "boom"})

    result = await make_runtime(UsesSecret, Prunes, Requeues, Fails).run_once()

    assert result == BatchResult(claimed=4, executed=1, errored=1, pruned=1, requeued=1)
    assert len(state_calls(server)) == 5
    assert all(TOKEN_HEADER not in r.headers for r in server.requests)


async def test_a_stale_claim_is_refused_logged_and_not_retried(
    server: FakeServer, make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    state_id = server.add_state("Prunes", claim_token="old-claim")
    server.fail("/prune$", 409, detail="stale claim token")

    with caplog.at_level(logging.WARNING, logger="exospherehost"):
        result = await make_runtime(Prunes).run_once()

    assert result == BatchResult(claimed=1, pruned=1, unreported=1)
    assert [r.headers.get(TOKEN_HEADER) for r in state_calls(server)] == ["old-claim"]
    messages = [r.getMessage() for r in caplog.records]
    assert any(state_id in m and "stale claim token" in m for m in messages)


async def test_the_cancelled_at_shutdown_report_carries_the_claim_token(
    server: FakeServer, make_runtime: RuntimeFactory
) -> None:
    gate = Gate()
    held = gate.node()
    server.add_state(held.__name__, claim_token="claim-1")
    runtime = make_runtime(held)
    task = asyncio.create_task(runtime.run())
    await wait_until(lambda: gate.running == 1)

    await runtime.shutdown(grace_period=0.01)
    await task

    errored = server.routes("/errored")
    assert "Cancelled" in errored[0].body["error"]
    assert errored[0].headers.get(TOKEN_HEADER) == "claim-1"


# ---------------------------------------------------------------------- heartbeats and leases


@pytest.mark.parametrize("lease_expires_at", [FAR_PAST_MS, FAR_FUTURE_MS], ids=["past", "future"])
async def test_heartbeats_carry_the_token_and_follow_lease_ms_not_the_wall_clock(
    server: FakeServer, make_runtime: RuntimeFactory, lease_expires_at: int
) -> None:
    """A lease of 600 ms means a beat every 200 ms, whatever `lease_expires_at` says: by the
    worker's wall clock that lease is long gone (past) or runs for decades (future)."""
    gate = Gate()
    held = gate.node()
    server.add_state(held.__name__, claim_token="claim-1", lease_ms=600, lease_expires_at=lease_expires_at)
    server.heartbeat_lease_ms = 600
    runtime = make_runtime(held, heartbeat_interval=30.0)

    async with runtime:
        await wait_until(lambda: len(server.routes("/heartbeat")) >= 3)
        gate.release.set()
        await wait_until(lambda: len(server.routes("/executed")) == 1)

    beats = server.routes("/heartbeat")
    assert {r.headers.get(TOKEN_HEADER) for r in beats} == {"claim-1"}
    times = [server.routes("states/enqueue")[0].at, *(r.at for r in beats)]
    gaps = [later - earlier for earlier, later in pairwise(times)]
    assert min(gaps) >= 0.15  # a third of the lease (0.2 s), not the 50 ms floor


async def test_the_lease_ms_of_a_heartbeat_answer_sets_the_next_beat(
    server: FakeServer, make_runtime: RuntimeFactory
) -> None:
    gate = Gate()
    held = gate.node()
    server.add_state(held.__name__, claim_token="claim-1", lease_ms=300, lease_expires_at=FAR_PAST_MS)
    server.heartbeat_lease_ms = 60_000  # renewed for a minute: next beat in interval (30 s)
    runtime = make_runtime(held, heartbeat_interval=30.0)

    async with runtime:
        await wait_until(lambda: len(server.routes("/heartbeat")) == 1)
        await asyncio.sleep(0.3)  # three times the first pace; a short lease would beat again
        assert len(server.routes("/heartbeat")) == 1
        gate.release.set()
        await wait_until(lambda: len(server.routes("/executed")) == 1)


def test_lease_ms_is_measured_from_when_the_answer_arrived() -> None:
    answer = {"lease_expires_at": FAR_PAST_MS, "lease_ms": 1500}

    assert lease_deadline(answer, received_at=100.0, wall_now=1_700_000_000.0) == pytest.approx(101.5)
    assert lease_deadline(answer, received_at=100.0, wall_now=0.0) == pytest.approx(101.5)


def test_without_lease_ms_the_server_wall_clock_expiry_is_used() -> None:
    """An older server of ours sends only `lease_expires_at`: compared with the wall clock."""
    answer = {"lease_expires_at": 1_700_000_030_000}

    deadline = lease_deadline(answer, received_at=100.0, wall_now=1_700_000_000.0)

    assert deadline == pytest.approx(130.0)


def test_an_answer_without_lease_fields_has_no_lease() -> None:
    assert lease_deadline({"state_id": "s1", "status": "QUEUED"}, 100.0, 1_700_000_000.0) is None
