"""Attempts the server ends while their node runs: a cancelled run, a node past its timeout.

The server answers the state's heartbeat, secrets read or report with a 409 whose `code` is
`STATE_CANCELLED` or `STATE_TIMED_OUT`; a state claimed with `timeout_ms` is also stopped by the
runtime itself. Either way: the node is stopped, one warning is logged, nothing is reported.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from pydantic import BaseModel

from exospherehost import BaseNode
from exospherehost._worker import timeout_deadline
from exospherehost.runtime import BatchResult

from .conftest import RuntimeFactory
from .fake_server import FakeServer
from .nodes import Greet, UsesSecret
from .test_runtime_lifecycle import HANG_GUARD, wait_until

ENDINGS = [
    pytest.param("STATE_CANCELLED", "its run was cancelled", id="cancelled"),
    pytest.param("STATE_TIMED_OUT", "timed out", id="timed-out"),
]


class Hang:
    """A node that runs until it is cancelled, and records when that happened."""

    def __init__(self) -> None:
        self.started = 0
        self.cancelled_at: float | None = None

    def node(self) -> type[BaseNode]:
        hang = self

        class Hangs(BaseNode):
            class Outputs(BaseModel):
                done: str

            async def execute(self) -> Outputs:
                hang.started += 1
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    hang.cancelled_at = time.monotonic()
                    raise
                return self.Outputs(done="never")

        return Hangs


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def reports(server: FakeServer) -> list[str]:
    kinds = ("/executed", "/errored", "/prune", "/re-enqueue-after")
    return [r.route for r in server.requests if r.route.endswith(kinds)]


@pytest.mark.parametrize(("code", "phrase"), ENDINGS)
async def test_a_heartbeat_refused_with_an_ending_code_stops_the_node_and_reports_nothing(
    server: FakeServer,
    make_runtime: RuntimeFactory,
    caplog: pytest.LogCaptureFixture,
    code: str,
    phrase: str,
) -> None:
    hang = Hang()
    node = hang.node()
    state_id = server.add_state(node.__name__, claim_token="claim-1", lease_ms=60_000)
    server.fail("/heartbeat$", 409, detail=f"State {state_id} was ended", code=code)
    runtime = make_runtime(node, heartbeat_interval=0.02)

    with caplog.at_level(logging.WARNING, logger="exospherehost"):
        result = await asyncio.wait_for(runtime.run_once(), HANG_GUARD)

    assert result == BatchResult(claimed=1, unreported=1)
    assert hang.cancelled_at is not None
    assert reports(server) == []
    assert len(server.routes("/heartbeat")) == 1
    [line] = warnings_of(caplog)
    assert state_id in line and node.__name__ in line and phrase in line


@pytest.mark.parametrize(("code", "phrase"), ENDINGS)
async def test_a_secrets_read_refused_with_an_ending_code_reports_nothing(
    server: FakeServer,
    make_runtime: RuntimeFactory,
    caplog: pytest.LogCaptureFixture,
    code: str,
    phrase: str,
) -> None:
    state_id = server.add_state("UsesSecret", claim_token="claim-1")
    server.fail("/secrets$", 409, detail=f"State {state_id} was ended", code=code)

    with caplog.at_level(logging.WARNING, logger="exospherehost"):
        result = await make_runtime(UsesSecret).run_once()

    assert result == BatchResult(claimed=1, unreported=1)
    assert reports(server) == []  # not "Could not fetch secrets" reported errored
    [line] = warnings_of(caplog)
    assert state_id in line and "UsesSecret" in line and phrase in line


@pytest.mark.parametrize(("code", "phrase"), ENDINGS)
async def test_a_report_refused_with_an_ending_code_is_neither_replaced_nor_retried(
    server: FakeServer,
    make_runtime: RuntimeFactory,
    caplog: pytest.LogCaptureFixture,
    code: str,
    phrase: str,
) -> None:
    state_id = server.add_state("Greet", {"name": "Ada"}, claim_token="claim-1")
    server.fail("/executed$", 409, detail=f"State {state_id} was ended", code=code)

    with caplog.at_level(logging.WARNING, logger="exospherehost"):
        result = await make_runtime(Greet).run_once()

    assert result == BatchResult(claimed=1, unreported=1)
    assert reports(server) == [f"state/{state_id}/executed"]
    [line] = warnings_of(caplog)
    assert state_id in line and "Greet" in line and phrase in line


# ---------------------------------------------------------------------- node timeouts


async def test_a_node_past_its_timeout_is_stopped_and_nothing_is_reported(
    server: FakeServer, make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    hang = Hang()
    node = hang.node()
    state_id = server.add_state(node.__name__, claim_token="claim-1", timeout_ms=200)

    with caplog.at_level(logging.WARNING, logger="exospherehost"):
        result = await asyncio.wait_for(make_runtime(node).run_once(), HANG_GUARD)

    assert result == BatchResult(claimed=1, unreported=1)
    assert hang.cancelled_at is not None
    # Not before its time: the timeout counts from the enqueue answer (later than the request).
    assert hang.cancelled_at - server.routes("states/enqueue")[0].at >= 0.2
    assert reports(server) == []
    [line] = warnings_of(caplog)
    assert state_id in line and node.__name__ in line and "timed out" in line


async def test_a_node_within_its_timeout_is_reported_as_usual(
    server: FakeServer, make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    state_id = server.add_state("Greet", {"name": "Ada"}, timeout_ms=10_000)

    with caplog.at_level(logging.WARNING, logger="exospherehost"):
        result = await make_runtime(Greet).run_once()

    assert result == BatchResult(claimed=1, executed=1)
    assert reports(server) == [f"state/{state_id}/executed"]
    assert warnings_of(caplog) == []


async def test_a_timed_out_node_of_a_running_runtime_frees_its_worker(
    server: FakeServer, make_runtime: RuntimeFactory
) -> None:
    hang = Hang()
    node = hang.node()
    server.add_state(node.__name__, timeout_ms=50)
    runtime = make_runtime(node, Greet, workers=1)

    async with runtime:
        await wait_until(lambda: hang.cancelled_at is not None)
        state_id = server.add_state("Greet", {"name": "Ada"})
        await wait_until(lambda: len(server.routes("/executed")) == 1)

    assert reports(server) == [f"state/{state_id}/executed"]


def test_timeout_ms_is_measured_from_when_the_answer_arrived() -> None:
    assert timeout_deadline({"timeout_ms": 1500}, received_at=100.0) == pytest.approx(101.5)
    assert timeout_deadline({"timeout_ms": None}, received_at=100.0) is None
    assert timeout_deadline({"state_id": "s1"}, received_at=100.0) is None
