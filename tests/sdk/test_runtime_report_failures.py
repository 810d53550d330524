"""Reports that cannot be delivered as they are: too large (413), not JSON, or failing to send.

In each case the state must fail visibly (reported errored, so the graph's retry policy
decides) instead of silently waiting out its lease, and the runtime must never loop.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from exospherehost import BaseNode, PruneSignal
from exospherehost.runtime import BatchResult

from .conftest import RuntimeFactory
from .fake_server import FakeServer
from .nodes import Fails, Greet, Prunes

TOKEN_HEADER = "x-exosphere-claim-token"
MAX_ERROR_BYTES = 64 * 1024
TOO_LARGE = "the outputs would make a 17 MB state document; the store's limit is 16 MB"


def error_logs(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


# ---------------------------------------------------------------------- 413


async def test_outputs_refused_as_too_large_report_the_state_errored(
    server: FakeServer, make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    state_id = server.add_state("Greet", {"name": "Ada"}, claim_token="claim-1")
    server.fail("/executed$", 413, detail=TOO_LARGE)

    with caplog.at_level(logging.WARNING, logger="exospherehost"):
        result = await make_runtime(Greet).run_once()

    assert result == BatchResult(claimed=1, errored=1)
    assert len(server.routes("/executed")) == 1  # not retried
    errored = server.routes("/errored")
    expected = f"Outputs rejected by the state manager (413): {TOO_LARGE}"
    assert [r.body for r in errored] == [{"error": expected}]
    assert errored[0].headers.get(TOKEN_HEADER) == "claim-1"
    logged = [r.getMessage() for r in error_logs(caplog)]
    assert any(state_id in m and "Greet" in m and TOO_LARGE in m for m in logged)


async def test_prune_data_refused_as_too_large_reports_the_state_errored(
    server: FakeServer, make_runtime: RuntimeFactory
) -> None:
    server.add_state("Prunes")
    server.fail("/prune$", 413, detail="request body over 1 MiB")

    result = await make_runtime(Prunes).run_once()

    assert result == BatchResult(claimed=1, errored=1)
    assert server.routes("/errored")[0].body == {
        "error": "Prune data rejected by the state manager (413): request body over 1 MiB"
    }


@pytest.mark.parametrize("status", [400, 409, 413])
async def test_a_refused_errored_report_after_a_413_is_logged_not_repeated(
    server: FakeServer, make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    state_id = server.add_state("Greet", {"name": "Ada"})
    server.fail("/executed$", 413, detail=TOO_LARGE)
    server.fail("/errored$", status, times=5, detail="refused too")

    with caplog.at_level(logging.WARNING, logger="exospherehost"):
        result = await make_runtime(Greet).run_once()

    assert result == BatchResult(claimed=1, errored=1, unreported=1)
    assert len(server.routes("/executed")) == 1
    assert len(server.routes("/errored")) == 1
    assert any(state_id in r.getMessage() and "refused too" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("message", ["x" * 200_000, "é" * 100_000], ids=["ascii", "two-byte"])
async def test_an_errored_report_is_capped_at_64_kib(
    server: FakeServer, make_runtime: RuntimeFactory, message: str
) -> None:
    server.add_state("Fails", {"message": message})

    result = await make_runtime(Fails).run_once()

    assert result == BatchResult(claimed=1, errored=1)
    error = server.routes("/errored")[0].body["error"]
    assert len(error.encode()) <= MAX_ERROR_BYTES
    assert error.startswith(message[:1000])
    assert error.endswith(f"truncated by exospherehost: the error was {len(message.encode())} bytes]")


# ---------------------------------------------------------------------- not JSON


class PrunesWithADate(BaseNode):
    async def execute(self) -> None:
        raise PruneSignal({"when": datetime.now(UTC)})


class PrunesWithNaN(BaseNode):
    async def execute(self) -> None:
        raise PruneSignal({"score": float("nan")})


@pytest.mark.parametrize(
    ("node", "reason"),
    [
        (PrunesWithADate, "Object of type datetime is not JSON serializable"),
        (PrunesWithNaN, "Out of range float values are not JSON compliant"),
    ],
)
async def test_prune_data_that_is_not_json_fails_the_state_at_once(
    server: FakeServer,
    make_runtime: RuntimeFactory,
    caplog: pytest.LogCaptureFixture,
    node: type[BaseNode],
    reason: str,
) -> None:
    state_id = server.add_state(node.__name__)

    with caplog.at_level(logging.WARNING, logger="exospherehost"):
        result = await make_runtime(node).run_once()

    assert result == BatchResult(claimed=1, errored=1)
    assert server.routes("/prune") == []
    error = server.routes("/errored")[0].body["error"]
    assert error.startswith(f"PruneSignal data of node {node.__name__} is not JSON-serialisable: ")
    assert reason in error
    logged = [r.getMessage() for r in error_logs(caplog)]
    assert any(state_id in m and node.__name__ in m and reason in m for m in logged)


class Score(BaseModel):
    value: float


class ReturnsInfinity(BaseNode):
    async def execute(self) -> Score:
        return Score(value=float("inf"))


async def test_outputs_that_are_not_strict_json_fail_the_state_at_once(
    server: FakeServer, make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server.add_state("ReturnsInfinity")

    with caplog.at_level(logging.WARNING, logger="exospherehost"):
        result = await make_runtime(ReturnsInfinity).run_once()

    assert result == BatchResult(claimed=1, errored=1)
    assert server.routes("/executed") == []
    assert server.routes("/errored")[0].body == {
        "error": "Outputs of node ReturnsInfinity are not JSON-serialisable: "
        "Out of range float values are not JSON compliant"
    }
    assert any("ReturnsInfinity" in r.getMessage() for r in error_logs(caplog))


# ---------------------------------------------------------------------- failing to send


@pytest.mark.parametrize("exception", [TypeError("not serialisable"), ValueError("bad value")])
async def test_an_exception_while_sending_a_report_reports_the_state_errored(
    server: FakeServer,
    make_runtime: RuntimeFactory,
    caplog: pytest.LogCaptureFixture,
    exception: Exception,
) -> None:
    server.add_state("Greet", {"name": "Ada"}, claim_token="claim-1")
    server.fail("/executed$", exception)

    with caplog.at_level(logging.WARNING, logger="exospherehost"):
        result = await make_runtime(Greet).run_once()

    assert result == BatchResult(claimed=1, errored=1)
    assert len(server.routes("/executed")) == 1
    errored = server.routes("/errored")
    expected = f"Could not report executed for node Greet: {type(exception).__name__}: {exception}"
    assert [r.body for r in errored] == [{"error": expected}]
    assert errored[0].headers.get(TOKEN_HEADER) == "claim-1"
    tracebacks: list[Any] = [r.exc_info for r in error_logs(caplog) if r.exc_info]
    assert [info[1] for info in tracebacks] == [exception]


async def test_an_exception_while_sending_an_errored_report_is_logged_not_repeated(
    server: FakeServer, make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server.add_state("Fails", {"message": "boom"})
    server.fail("/errored$", TypeError("cannot send"), times=5)

    with caplog.at_level(logging.WARNING, logger="exospherehost"):
        result = await make_runtime(Fails).run_once()

    assert result == BatchResult(claimed=1, errored=1, unreported=1)
    assert len(server.routes("/errored")) == 1
    assert any("cannot send" in r.getMessage() for r in error_logs(caplog))
