"""`StateManager.diff_runs` against a real server and runtime: a typed `RunDiff` of two runs of a
fan-out, and the typed errors for an unknown run and runs of two graphs; an answer it cannot read
is a `TransportError` naming the call."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from exospherehost import (
    BadRequestError,
    DiffSide,
    FieldDiff,
    GraphNodeModel,
    NodeDiff,
    NotFoundError,
    RunDiff,
    Runtime,
    StateManager,
    TransportError,
)
from tests.support.live_server import LiveServer, start_server

from .fake_server import PREFIX, FakeServer
from .nodes import FanOut, Greet


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def sm(live: LiveServer) -> AsyncIterator[StateManager]:
    namespace = f"diff-{uuid.uuid4().hex[:8]}"
    async with (
        StateManager(namespace, live.base_url, live.api_key) as client,
        Runtime(namespace, "worker", [FanOut, Greet], state_manager_uri=live.base_url, key=live.api_key),
    ):
        for name in ("fan", "other"):
            nodes = [
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
            await client.upsert_graph(name, nodes, secrets={})
        yield client


async def _finished_run(sm: StateManager, graph: str, count: str) -> str:
    run_id: str = (await sm.trigger(graph, inputs={"count": count}))["run_id"]
    deadline = time.monotonic() + 20
    while (status := (await sm.get_run(run_id))["status"]) not in ("SUCCESS", "FAILED", "CANCELLED"):
        assert time.monotonic() < deadline, f"run {run_id} still {status}"
        await asyncio.sleep(0.05)
    return run_id


@pytest.mark.e2e
async def test_a_run_with_a_narrower_fan_out_lacks_the_last_copy_and_its_child(sm: StateManager) -> None:
    three = await _finished_run(sm, "fan", "3")
    two = await _finished_run(sm, "fan", "2")

    diff = await sm.diff_runs(three, two)

    assert isinstance(diff, RunDiff)
    assert (diff.a, diff.b, diff.graph, diff.same) == (three, two, "fan", False)
    assert [(n.identifier, n.position, n.change) for n in diff.nodes] == [
        ("fan", [0], "changed"),  # its input count differs
        ("fan", [1], "changed"),
        ("fan", [2], "only_a"),
        ("greet", [0, 0], "same"),
        ("greet", [1, 0], "same"),
        ("greet", [2, 0], "only_a"),
    ]
    assert diff.nodes[0].fields == [FieldDiff(path="inputs.count", a="3", b="2")]
    only = diff.nodes[5]
    assert isinstance(only, NodeDiff) and only.b is None and isinstance(only.a, DiffSide)
    assert (only.a.status, only.a.outputs) == ("SUCCESS", {"message": "hello 2"})
    assert (diff.summary.same, diff.summary.changed, diff.summary.only_a, diff.summary.only_b) == (2, 2, 2, 0)
    assert [n.position for n in diff.differences()] == [[0], [1], [2], [2, 0]]


@pytest.mark.e2e
async def test_two_runs_with_the_same_inputs_are_the_same(sm: StateManager) -> None:
    a = await _finished_run(sm, "fan", "2")
    b = await _finished_run(sm, "fan", "2")

    diff = await sm.diff_runs(a, b)

    assert diff.same and diff.differences() == []
    assert diff.summary.same == 4


@pytest.mark.e2e
async def test_an_unknown_run_is_not_found_and_runs_of_two_graphs_are_refused(sm: StateManager) -> None:
    a = await _finished_run(sm, "fan", "1")
    b = await _finished_run(sm, "other", "1")

    with pytest.raises(NotFoundError, match="Run nope not found"):
        await sm.diff_runs(a, "nope")
    with pytest.raises(BadRequestError, match="different graphs") as refused:
        await sm.diff_runs(a, b)
    assert refused.value.status_code == 422


async def test_an_answer_that_is_not_a_diff_is_a_transport_error_naming_the_call(
    server: FakeServer, state_manager: StateManager
) -> None:
    server.answer_once("^run/a/diff/b$", 200, {"a": "a", "b": "b", "graph": "g", "nodes": []})

    with pytest.raises(TransportError) as caught:
        await state_manager.diff_runs("a", "b")

    assert str(caught.value) == f"GET {PREFIX}/run/a/diff/b: not a run diff: summary: Field required"
