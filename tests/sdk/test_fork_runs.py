"""`StateManager.fork_run` and `StateManager.fork_failed` against a real server and runtime: a typed
`ForkedRun` that runs to its end with the new inputs and the reused states, the server's refusals
as typed errors with its message, and a bulk fork repeated with an idempotency key answering the
same forks. Against the fake server: what is sent, and an unreadable answer."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from exospherehost import (
    BadRequestError,
    ConflictError,
    ForkedFrom,
    ForkedRun,
    ForkFailedResult,
    GraphNodeModel,
    NotFoundError,
    Runtime,
    SkippedFork,
    StateManager,
    TransportError,
)
from tests.support.live_server import LiveServer, start_server

from .fake_server import PREFIX, FakeServer
from .nodes import Fails, FanOut, Greet

FINAL = ("SUCCESS", "FAILED", "CANCELLED")


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


def _fan(namespace: str) -> list[GraphNodeModel]:
    """fan (FanOut: `count` copies) -> greet (Greet: name = the copy's index)."""
    return [
        GraphNodeModel(
            node_name="FanOut",
            namespace=namespace,
            identifier="fan",
            inputs={"count": "1"},
            next_nodes=["greet"],
        ),
        GraphNodeModel(
            node_name="Greet",
            namespace=namespace,
            identifier="greet",
            inputs={"name": "${{ fan.outputs.index }}"},
        ),
    ]


def _failing(namespace: str, identifier: str = "fail") -> list[GraphNodeModel]:
    """greet (Greet) -> `identifier` (Fails: always raises)."""
    return [
        GraphNodeModel(
            node_name="Greet",
            namespace=namespace,
            identifier="greet",
            inputs={"name": "x"},
            next_nodes=[identifier],
        ),
        GraphNodeModel(
            node_name="Fails", namespace=namespace, identifier=identifier, inputs={"message": "no"}
        ),
    ]


@pytest.fixture
def namespace() -> str:
    return f"fork-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def sm(live: LiveServer, namespace: str) -> AsyncIterator[StateManager]:
    async with (
        StateManager(namespace, live.base_url, live.api_key) as client,
        Runtime(
            namespace, "worker", [FanOut, Greet, Fails], state_manager_uri=live.base_url, key=live.api_key
        ),
    ):
        await client.upsert_graph("fan", _fan(namespace), secrets={})
        await client.upsert_graph("failing", _failing(namespace), secrets={}, retry_policy={"max_retries": 0})
        yield client


async def _ended(sm: StateManager, run_id: str) -> str:
    deadline = time.monotonic() + 20
    while (status := str((await sm.get_run(run_id))["status"])) not in FINAL:
        assert time.monotonic() < deadline, f"run {run_id} still {status}"
        await asyncio.sleep(0.05)
    return status


async def _outputs(
    sm: StateManager, run_id: str, identifier: str, field: str = "outputs"
) -> list[dict[str, str]]:
    page = await sm.list_run_states(run_id, identifier=identifier)
    return [state[field] for state in page["states"]]


@pytest.mark.e2e
async def test_a_fork_reuses_the_fan_out_and_runs_the_node_again_with_the_new_input(sm: StateManager) -> None:
    original = (await sm.trigger("fan", inputs={"count": "2"}))["run_id"]
    assert await _ended(sm, original) == "SUCCESS"

    fork = await sm.fork_run(original, from_=["greet"], inputs={"greet": {"name": "Ada"}})

    assert isinstance(fork, ForkedRun)
    assert fork.run_id != original
    assert fork.forked_from == ForkedFrom(run_id=original, from_=["greet"])
    assert (fork.reused, fork.status) == (2, "PENDING")  # both copies of the fan-out
    assert await _ended(sm, fork.run_id) == "SUCCESS"
    assert await _outputs(sm, fork.run_id, "greet", "inputs") == [{"name": "Ada"}] * 2
    assert await _outputs(sm, fork.run_id, "greet") == [{"message": "hello Ada"}] * 2
    assert await _outputs(sm, fork.run_id, "fan") == await _outputs(sm, original, "fan")
    assert (await sm.get_run(fork.run_id))["forked_from"] == {"run_id": original, "from": ["greet"]}
    assert (await sm.get_run(original))["forks"] == [fork.run_id]
    diff = await sm.diff_runs(original, fork.run_id)
    assert [(n.identifier, n.change) for n in diff.nodes] == [
        ("fan", "same"),
        ("fan", "same"),
        ("greet", "changed"),
        ("greet", "changed"),
    ]


@pytest.mark.e2e
async def test_a_store_override_and_the_current_graph_version(sm: StateManager) -> None:
    original = (await sm.trigger("fan", inputs={"count": "1"}, store={"tenant": "acme"}))["run_id"]
    await _ended(sm, original)

    fork = await sm.fork_run(original, "fan", store={"tenant": "beta"}, graph_version="current")

    assert (fork.forked_from.from_, fork.reused) == (["fan"], 0)
    assert await _ended(sm, fork.run_id) == "SUCCESS"
    assert (await sm.get_run(fork.run_id))["store"] == {"tenant": "beta"}


@pytest.mark.e2e
async def test_the_servers_refusals_are_typed_errors_with_its_message(sm: StateManager) -> None:
    done = (await sm.trigger("fan", inputs={"count": "1"}))["run_id"]
    await _ended(sm, done)
    waiting = (await sm.trigger("fan", inputs={"count": "1"}, start_delay=60_000))["run_id"]

    with pytest.raises(ConflictError, match=f"Run {waiting} has not ended") as not_ended:
        await sm.fork_run(waiting, ["greet"])
    with pytest.raises(BadRequestError, match="graph fan has no node 'nope'") as unknown:
        await sm.fork_run(done, ["nope"])
    with pytest.raises(BadRequestError, match="node 'fan' is not forked from") as not_from:
        await sm.fork_run(done, ["greet"], inputs={"fan": {"count": "3"}})
    with pytest.raises(NotFoundError, match="Run nope not found"):
        await sm.fork_run("nope", ["greet"])

    assert not_ended.value.status_code == 409
    assert (unknown.value.status_code, not_from.value.status_code) == (422, 422)
    await sm.cancel_run(waiting)


@pytest.mark.e2e
async def test_fork_failed_repeated_with_an_idempotency_key_answers_the_same_forks(sm: StateManager) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    failed = [(await sm.trigger("failing"))["run_id"] for _ in range(2)]
    assert [await _ended(sm, run_id) for run_id in failed] == ["FAILED", "FAILED"]

    until = datetime.now(UTC)  # fixed before the first call: the forks it makes are not in the window

    first = await sm.fork_failed("failing", since=since, until=until, idempotency_key="nightly-1")
    for fork in first.forks:
        assert await _ended(sm, fork.run_id) == "FAILED"  # the graph still fails there
    again = await sm.fork_failed("failing", since=since.isoformat(), until=until, idempotency_key="nightly-1")

    assert isinstance(first, ForkFailedResult) and first.skipped == []
    assert [(f.forked_from.run_id, f.forked_from.from_, f.reused) for f in first.forks] == [
        (failed[0], ["fail"], 1),  # greet succeeded and is reused; fail runs again
        (failed[1], ["fail"], 1),
    ]
    assert [(f.run_id, f.forked_from) for f in again.forks] == [
        (f.run_id, f.forked_from) for f in first.forks
    ]
    assert [f.status for f in again.forks] == ["FAILED", "FAILED"]  # each fork as it is now
    assert len((await sm.search_runs(graph="failing"))["runs"]) == 4  # two failed runs, two forks


@pytest.mark.e2e
async def test_fork_failed_skips_a_run_whose_failed_node_the_current_graph_lacks(
    sm: StateManager, namespace: str
) -> None:
    failed = (await sm.trigger("failing"))["run_id"]
    assert await _ended(sm, failed) == "FAILED"
    await sm.upsert_graph("failing", _failing(namespace, "fixed"), secrets={})

    result = await sm.fork_failed("failing", until=datetime.now(UTC), limit=10)

    assert result.forks == []
    assert len(result.skipped) == 1 and isinstance(result.skipped[0], SkippedFork)
    assert result.skipped[0].run_id == failed
    assert result.skipped[0].reason == "from: graph failing has no node 'fail' (it has greet, fixed)"


async def test_fork_run_sends_the_wire_body(server: FakeServer, state_manager: StateManager) -> None:
    answer = {
        "run_id": "new",
        "forked_from": {"run_id": "old", "from": ["b"]},
        "reused": 3,
        "status": "PENDING",
    }
    server.answer_once("^run/old/fork$", 201, answer)

    fork = await state_manager.fork_run("old", ["b"], inputs={"b": {"x": "1"}}, store={"k": "v"})

    (sent,) = server.routes("run/old/fork")
    assert (sent.method, sent.body) == (
        "POST",
        {"from": ["b"], "inputs": {"b": {"x": "1"}}, "store": {"k": "v"}, "graph_version": "original"},
    )
    assert fork.model_dump(by_alias=True) == answer
    assert fork.forked_from.from_ == ["b"]


async def test_fork_failed_sends_times_as_iso_8601_and_the_key_as_a_header(
    server: FakeServer, state_manager: StateManager
) -> None:
    server.answer_once(
        "^runs/fork-failed$", 200, {"forks": [], "skipped": [{"run_id": "r", "reason": "why"}]}
    )
    since = datetime(2026, 1, 7, 2, 30, tzinfo=UTC)

    result = await state_manager.fork_failed(
        "g", since=since, until="2026-01-08T00:00:00Z", idempotency_key="k1"
    )

    (sent,) = server.routes("runs/fork-failed")
    assert sent.body == {
        "graph": "g",
        "since": "2026-01-07T02:30:00+00:00",
        "until": "2026-01-08T00:00:00Z",
        "graph_version": "current",
        "limit": 100,
    }
    assert sent.headers["Idempotency-Key"] == "k1"
    assert result.skipped == [SkippedFork(run_id="r", reason="why")]


async def test_bad_arguments_are_refused_before_anything_is_sent(
    server: FakeServer, state_manager: StateManager
) -> None:
    with pytest.raises(ValueError, match="from_ should name at least one node"):
        await state_manager.fork_run("r", [])
    with pytest.raises(ValueError, match='graph_version should be "original" or "current"'):
        await state_manager.fork_run("r", ["a"], graph_version="latest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        await state_manager.fork_failed("g", since=datetime(2026, 1, 7))  # noqa: DTZ001 - the mistake
    with pytest.raises(ValueError, match="idempotency_key should not be empty"):
        await state_manager.fork_failed("g", idempotency_key="")

    assert server.routes("fork") == [] and server.routes("fork-failed") == []


async def test_an_answer_that_is_not_a_fork_is_a_transport_error_naming_the_call(
    server: FakeServer, state_manager: StateManager
) -> None:
    server.answer_once("^run/a/fork$", 201, {"run_id": "b", "reused": 0, "status": "PENDING"})

    with pytest.raises(TransportError) as caught:
        await state_manager.fork_run("a", ["x"])

    assert str(caught.value) == f"POST {PREFIX}/run/a/fork: not a fork: forked_from: Field required"
