"""One batch through `Runtime.run_once()`: what the runtime sends for each kind of outcome."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from pydantic import BaseModel

from exospherehost import AuthenticationError, BaseNode
from exospherehost._worker import next_heartbeat_in
from exospherehost.runtime import BatchResult

from .conftest import RuntimeFactory
from .fake_server import API_KEY, NAMESPACE, PREFIX, FakeServer
from .nodes import (
    Fails,
    FailsSilently,
    FanOut,
    Greet,
    Nothing,
    Prunes,
    Requeues,
    ReturnsJunk,
    UsesSecret,
)


async def test_registers_the_nodes_once(server: FakeServer, make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(Greet, UsesSecret)

    await runtime.run_once()
    await runtime.run_once()

    registrations = server.routes("nodes/")
    assert len(registrations) == 1
    request = registrations[0]
    assert (request.method, request.path) == ("PUT", f"{PREFIX}/nodes/")
    assert request.headers["x-api-key"] == API_KEY
    assert request.body == {
        "runtime_name": "test-runtime",
        "runtime_namespace": NAMESPACE,
        "nodes": [
            {
                "name": "Greet",
                "namespace": NAMESPACE,
                "inputs_schema": Greet.Inputs.model_json_schema(),
                "outputs_schema": Greet.Outputs.model_json_schema(),
                "secrets": [],
            },
            {
                "name": "UsesSecret",
                "namespace": NAMESPACE,
                "inputs_schema": UsesSecret.Inputs.model_json_schema(),
                "outputs_schema": UsesSecret.Outputs.model_json_schema(),
                "secrets": ["api_token"],
            },
        ],
    }


async def test_registration_failure_raises(server: FakeServer, make_runtime: RuntimeFactory) -> None:
    server.fail("^nodes/$", 401, detail="Invalid API key")

    with pytest.raises(AuthenticationError, match="Invalid API key"):
        await make_runtime(Greet).run_once()


async def test_executes_a_state_and_reports_executed(
    server: FakeServer, make_runtime: RuntimeFactory
) -> None:
    state_id = server.add_state("Greet", {"name": "Ada"})

    result = await make_runtime(Greet, batch_size=3).run_once()

    assert result == BatchResult(claimed=1, executed=1)
    enqueue = server.routes("states/enqueue")[0]
    assert enqueue.method == "POST"
    assert enqueue.body == {"nodes": ["Greet"], "batch_size": 3, "wait_ms": 0}
    executed = server.routes("/executed")
    assert [(r.method, r.path) for r in executed] == [("POST", f"{PREFIX}/state/{state_id}/executed")]
    assert executed[0].body == {"outputs": [{"message": "hello Ada"}]}


async def test_a_list_of_outputs_fans_out(server: FakeServer, make_runtime: RuntimeFactory) -> None:
    server.add_state("FanOut", {"count": "3"})

    await make_runtime(FanOut).run_once()

    assert server.routes("/executed")[0].body == {"outputs": [{"index": "0"}, {"index": "1"}, {"index": "2"}]}


async def test_none_means_no_outputs(server: FakeServer, make_runtime: RuntimeFactory) -> None:
    server.add_state("Nothing")

    await make_runtime(Nothing).run_once()

    assert server.routes("/executed")[0].body == {"outputs": []}


async def test_an_empty_batch_does_nothing(server: FakeServer, make_runtime: RuntimeFactory) -> None:
    assert await make_runtime(Greet).run_once() == BatchResult()


async def test_node_exception_reports_errored(server: FakeServer, make_runtime: RuntimeFactory) -> None:
    state_id = server.add_state("Fails", {"message": "boom"})

    result = await make_runtime(Fails).run_once()

    assert result == BatchResult(claimed=1, errored=1)
    errored = server.routes("/errored")
    assert [r.path for r in errored] == [f"{PREFIX}/state/{state_id}/errored"]
    assert errored[0].body["error"] == "boom"
    details = errored[0].body["details"]  # the whole error goes along (decision: issue 16, item 4)
    assert details["type"] == "builtins.ValueError"
    assert "Traceback (most recent call last)" in details["traceback"] and "boom" in details["traceback"]
    assert server.routes("/executed") == []


async def test_exception_without_message_reports_its_type(
    server: FakeServer, make_runtime: RuntimeFactory
) -> None:
    server.add_state("FailsSilently")

    await make_runtime(FailsSilently).run_once()

    body = server.routes("/errored")[0].body
    assert (body["error"], body["details"]["type"]) == ("RuntimeError", "builtins.RuntimeError")


async def test_wrong_return_type_reports_errored(server: FakeServer, make_runtime: RuntimeFactory) -> None:
    server.add_state("ReturnsJunk")

    await make_runtime(ReturnsJunk).run_once()

    assert "returned str" in server.routes("/errored")[0].body["error"]


async def test_invalid_inputs_report_errored_without_running(
    server: FakeServer, make_runtime: RuntimeFactory
) -> None:
    server.add_state("Greet", {"wrong": "field"})

    await make_runtime(Greet).run_once()

    error = server.routes("/errored")[0].body["error"]
    assert "Invalid inputs for node Greet" in error
    assert "name" in error and "Field required" in error
    assert server.routes("/executed") == []


async def test_unknown_node_reports_errored(server: FakeServer, make_runtime: RuntimeFactory) -> None:
    ghost = {"state_id": "x1", "node_name": "Ghost", "identifier": "g", "inputs": {}}
    server.answer_once("states/enqueue", 200, {"count": 1, "status": "QUEUED", "states": [ghost]})

    await make_runtime(Greet).run_once()

    assert "no node named 'Ghost'" in server.routes("/errored")[0].body["error"]


async def test_secrets_are_fetched_only_for_nodes_that_declare_them(
    server: FakeServer, make_runtime: RuntimeFactory
) -> None:
    server.secrets = {"api_token": "t0k3n"}
    secret_state = server.add_state("UsesSecret")
    server.add_state("Greet", {"name": "Ada"})

    await make_runtime(Greet, UsesSecret).run_once()

    assert [r.path for r in server.routes("/secrets")] == [f"{PREFIX}/state/{secret_state}/secrets"]
    bodies = {r.path: r.body for r in server.routes("/executed")}
    assert bodies[f"{PREFIX}/state/{secret_state}/executed"] == {"outputs": [{"token": "t0k3n"}]}


async def test_secrets_failure_reports_errored(server: FakeServer, make_runtime: RuntimeFactory) -> None:
    server.add_state("UsesSecret")
    server.fail("/secrets$", 404, detail="Graph template not found")

    result = await make_runtime(UsesSecret).run_once()

    assert result.errored == 1
    error = server.routes("/errored")[0].body["error"]
    assert "Could not fetch secrets for node UsesSecret" in error
    assert "Graph template not found" in error


async def test_missing_secret_reports_errored(server: FakeServer, make_runtime: RuntimeFactory) -> None:
    server.add_state("UsesSecret")

    await make_runtime(UsesSecret).run_once()

    assert "Invalid secrets for node UsesSecret" in server.routes("/errored")[0].body["error"]


async def test_a_missing_secret_never_puts_other_secret_values_in_the_error(
    server: FakeServer, make_runtime: RuntimeFactory
) -> None:
    server.add_state("UsesSecret")
    server.secrets = {"unrelated_secret": "s3cr3t-value"}

    await make_runtime(UsesSecret).run_once()

    error = server.routes("/errored")[0].body["error"]
    assert "api_token" in error
    assert "s3cr3t-value" not in error


async def test_prune_signal_reports_prune(server: FakeServer, make_runtime: RuntimeFactory) -> None:
    state_id = server.add_state("Prunes")

    result = await make_runtime(Prunes).run_once()

    assert result == BatchResult(claimed=1, pruned=1)
    prune = server.routes("/prune")
    assert [(r.method, r.path) for r in prune] == [("POST", f"{PREFIX}/state/{state_id}/prune")]
    assert prune[0].body == {"data": {"reason": "nothing to do"}}


async def test_requeue_signal_reports_re_enqueue_after(
    server: FakeServer, make_runtime: RuntimeFactory
) -> None:
    state_id = server.add_state("Requeues")

    result = await make_runtime(Requeues).run_once()

    assert result == BatchResult(claimed=1, requeued=1)
    requeue = server.routes("/re-enqueue-after")
    assert [(r.method, r.path) for r in requeue] == [("POST", f"{PREFIX}/state/{state_id}/re-enqueue-after")]
    assert requeue[0].body == {"enqueue_after": 1500}


async def test_report_is_retried_after_503(server: FakeServer, make_runtime: RuntimeFactory) -> None:
    server.add_state("Greet", {"name": "Ada"})
    server.fail("/executed$", 503)

    result = await make_runtime(Greet).run_once()

    assert result == BatchResult(claimed=1, executed=1)
    assert len(server.routes("/executed")) == 2


async def test_report_is_retried_after_a_network_error(
    server: FakeServer, make_runtime: RuntimeFactory
) -> None:
    server.add_state("Prunes")
    server.fail("/prune$", httpx.ConnectError("connection reset"))

    result = await make_runtime(Prunes).run_once()

    assert result.unreported == 0
    assert len(server.routes("/prune")) == 2


async def test_conflict_on_executed_is_logged_not_retried(
    server: FakeServer, make_runtime: RuntimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    first = server.add_state("Greet", {"name": "Ada"})
    server.fail("/executed$", 409, detail="lease lost")
    runtime = make_runtime(Greet)

    with caplog.at_level(logging.WARNING, logger="exospherehost"):
        result = await runtime.run_once()

    assert result == BatchResult(claimed=1, executed=1, unreported=1)
    assert len(server.routes("/executed")) == 1
    assert server.routes("/errored") == []
    assert any(
        first in record.getMessage() and "lease lost" in record.getMessage() for record in caplog.records
    )

    server.add_state("Greet", {"name": "Bob"})
    assert await runtime.run_once() == BatchResult(claimed=1, executed=1)


async def test_network_failure_on_executed_is_not_reported_as_errored(
    server: FakeServer, make_runtime: RuntimeFactory
) -> None:
    server.add_state("Greet", {"name": "Ada"})
    server.fail("/executed$", httpx.ConnectError("down"), times=2)

    result = await make_runtime(Greet, report_retries=1).run_once()

    assert result == BatchResult(claimed=1, executed=1, unreported=1)
    assert len(server.routes("/executed")) == 2
    assert server.routes("/errored") == []


async def test_failed_signal_report_does_not_raise(server: FakeServer, make_runtime: RuntimeFactory) -> None:
    server.add_state("Requeues")
    server.fail("/re-enqueue-after$", 400, detail="State is not queued")

    result = await make_runtime(Requeues).run_once()

    assert result == BatchResult(claimed=1, requeued=1, unreported=1)


async def test_run_once_claims_no_more_than_free_workers(
    server: FakeServer, make_runtime: RuntimeFactory
) -> None:
    running = 0
    peak = 0

    class Slow(BaseNode):
        class Outputs(BaseModel):
            done: str

        async def execute(self) -> Outputs:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.02)
            running -= 1
            return self.Outputs(done="yes")

    for _ in range(6):
        server.add_state("Slow")
    runtime = make_runtime(Slow, workers=2, batch_size=6)

    results = [await runtime.run_once() for _ in range(3)]

    assert results == [BatchResult(claimed=2, executed=2)] * 3
    assert [r.body["batch_size"] for r in server.routes("states/enqueue")] == [2, 2, 2]
    assert peak == 2


@pytest.mark.parametrize(
    ("interval", "remaining", "expected"),
    [(30.0, 300.0, 30.0), (30.0, 15.0, 5.0), (30.0, -1.0, 0.05), (0.5, 300.0, 0.5)],
)
def test_heartbeats_come_at_least_three_times_per_remaining_lease(
    interval: float, remaining: float, expected: float
) -> None:
    now = 1_000_000.0  # a monotonic clock reading
    assert next_heartbeat_in(interval, now + remaining, now) == pytest.approx(expected)
