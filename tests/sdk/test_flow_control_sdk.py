"""Flow control from the SDK (issue 18): a node's `concurrency` and `rate_limit`, a graph's run
`concurrency`, and `state_why` / `run_why`.

Against a real server, with a runtime played by hand over HTTP (it claims states and holds them):
the limits set with the SDK's models hold states back, and `state_why` / `run_why` say why, with
what holds them. Against the fake server: what is sent, and that an upstream server never sees
the new keys when they are unset."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from exospherehost import (
    BadRequestError,
    ConcurrencyModel,
    GraphNodeModel,
    NotFoundError,
    RateLimitModel,
    RunWhy,
    StateManager,
    StateWhy,
    TransportError,
    WaitingGroup,
)
from tests.factories import node
from tests.support.live_server import LiveServer, start_server

from .fake_server import NAMESPACE, PREFIX, FakeServer, graph


@pytest.fixture(scope="module")
def live() -> Iterator[LiveServer]:
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def namespace() -> str:
    return f"flow-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def sm(live: LiveServer, namespace: str) -> AsyncIterator[StateManager]:
    async with StateManager(namespace, live.base_url, live.api_key) as client:
        yield client


@pytest.fixture
async def by_hand(live: LiveServer, namespace: str) -> AsyncIterator[httpx.AsyncClient]:
    """A runtime played over HTTP: node Alpha registered, its states claimed with `_claim` and
    held (never reported), so they keep their slots."""
    base = f"{live.base_url}/v0/namespace/{namespace}"
    async with httpx.AsyncClient(base_url=base, headers=live.headers) as http:
        registration = {"runtime_name": "by-hand", "nodes": [node("Alpha")]}
        assert (await http.put("/nodes/", json=registration)).is_success
        yield http


async def _claim(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    answer = await http.post("/states/enqueue", json={"nodes": ["Alpha"], "batch_size": 10})
    assert answer.is_success, answer.text
    states: list[dict[str, Any]] = answer.json()["states"]
    return states


def _alpha(namespace: str, **limits: Any) -> list[GraphNodeModel]:
    return [
        GraphNodeModel(node_name="Alpha", namespace=namespace, identifier="a", inputs={"x": "go"}, **limits)
    ]


async def _runs(sm: StateManager, count: int) -> list[str]:
    return [str((await sm.trigger("g"))["run_id"]) for _ in range(count)]


async def _state_of(sm: StateManager, run_id: str) -> str:
    [state] = (await sm.list_run_states(run_id))["states"]
    return str(state["id"])


# ---------------------------------------------------------------- against a real server


@pytest.mark.e2e
async def test_a_node_concurrency_limit_holds_the_second_run_and_state_why_names_the_holder(
    sm: StateManager, by_hand: httpx.AsyncClient, namespace: str
) -> None:
    await sm.upsert_graph("g", _alpha(namespace, concurrency=ConcurrencyModel(limit=1)), secrets={})
    first, second = await _runs(sm, 2)

    [held] = await _claim(by_hand)  # only one of the two, at a limit of 1
    waiting = await _state_of(sm, second)
    why = await sm.state_why(waiting)
    summary = await sm.run_why(second)

    assert held["run_id"] == first
    assert isinstance(why, StateWhy)
    assert (why.state_id, why.waiting, why.reason, why.blockers) == (
        waiting,
        True,
        "concurrency",
        [held["state_id"]],
    )
    assert why.detail.startswith("Node Alpha runs at most 1 at once; 1 of 1 are held")
    assert isinstance(summary, RunWhy) and summary.waiting == 1
    [group] = summary.groups
    assert isinstance(group, WaitingGroup)
    assert (group.node, group.namespace, group.reason, group.count, group.blockers) == (
        "Alpha",
        namespace,
        "concurrency",
        1,
        [held["state_id"]],
    )
    assert (await sm.run_why(first)).groups == []  # the holder's own run waits for nothing
    assert (await sm.get_graph("g"))["nodes"][0]["concurrency"] == {"limit": 1, "key": None}


@pytest.mark.e2e
async def test_a_graphs_run_concurrency_keeps_the_second_run_pending(
    sm: StateManager, by_hand: httpx.AsyncClient, namespace: str
) -> None:
    await sm.upsert_graph("g", _alpha(namespace), secrets={}, concurrency={"limit": 1})
    first, second = await _runs(sm, 2)

    [held] = await _claim(by_hand)
    why = await sm.state_why(await _state_of(sm, second))

    assert held["run_id"] == first
    assert (why.reason, why.blockers) == ("run_concurrency", [first])
    assert (await sm.get_run(second))["status"] == "PENDING"
    assert (await sm.get_graph("g"))["concurrency"] == {"limit": 1, "key": None}


@pytest.mark.e2e
async def test_a_rate_limit_says_when_the_next_claim_is_allowed(
    sm: StateManager, by_hand: httpx.AsyncClient, namespace: str
) -> None:
    limit = RateLimitModel(per_second=0.1)  # one claim every ten seconds
    await sm.upsert_graph("g", _alpha(namespace, rate_limit=limit), secrets={})
    _, second = await _runs(sm, 2)

    [_held] = await _claim(by_hand)
    before = time.time() * 1000
    why = await sm.state_why(await _state_of(sm, second))

    assert why.reason == "rate_limit"
    assert "Node Alpha is claimed at most 0.1 per second" in why.detail
    assert why.predicted_start_ms is not None and abs(why.predicted_start_ms - (before + 10_000)) < 1_000
    assert (
        why.predicted_start is not None and why.predicted_start.timestamp() * 1000 == why.predicted_start_ms
    )
    assert (await sm.get_graph("g"))["nodes"][0]["rate_limit"] == {"per_second": 0.1, "burst": 1, "key": None}


@pytest.mark.e2e
async def test_a_state_that_runs_does_not_wait(
    sm: StateManager, by_hand: httpx.AsyncClient, namespace: str
) -> None:
    await sm.upsert_graph("g", _alpha(namespace), secrets={})
    [run_id] = await _runs(sm, 1)
    [held] = await _claim(by_hand)

    why = await sm.state_why(held["state_id"])

    assert (why.waiting, why.reason, why.predicted_start, why.blockers) == (False, None, None, [])
    assert why.detail == "A runtime is running it."
    assert await sm.run_why(run_id) == RunWhy(run_id=run_id, waiting=0, groups=[])


@pytest.mark.e2e
async def test_the_servers_refusals_are_typed_errors_naming_the_field(
    sm: StateManager, by_hand: httpx.AsyncClient, namespace: str
) -> None:
    keyed = ConcurrencyModel(limit=1, key="${{ store.tenant }}")  # no such store key declared

    with pytest.raises(BadRequestError, match=r"concurrency\.key of node a references store key tenant"):
        await sm.upsert_graph("g", _alpha(namespace, concurrency=keyed), secrets={})
    with pytest.raises(NotFoundError):
        await sm.state_why("000000000000000000000000")
    with pytest.raises(BadRequestError, match="Invalid state id 'nope'"):
        await sm.state_why("nope")
    with pytest.raises(NotFoundError, match="Run nope not found"):
        await sm.run_why("nope")


# ---------------------------------------------------------------- what is sent


async def test_nodes_without_limits_are_sent_without_the_keys(
    server: FakeServer, state_manager: StateManager
) -> None:
    server.graph_responses = [(201, graph("VALID"))]
    plain = GraphNodeModel(node_name="Greet", namespace=NAMESPACE, identifier="a")

    await state_manager.upsert_graph("g", [plain], secrets={})

    body = server.requests[-1].body
    assert body["nodes"] == [
        {
            "node_name": "Greet",
            "namespace": NAMESPACE,
            "identifier": "a",
            "inputs": {},
            "next_nodes": None,
            "unites": None,
        }
    ]
    assert "concurrency" not in body  # an upstream server sees its own shape
    assert (plain.concurrency, plain.rate_limit) == (None, None)


async def test_limits_are_sent_as_set_from_models_or_dicts(
    server: FakeServer, state_manager: StateManager
) -> None:
    server.graph_responses = [(201, graph("VALID"))]
    nodes = [
        GraphNodeModel(
            node_name="Greet",
            namespace=NAMESPACE,
            identifier="a",
            concurrency=ConcurrencyModel(limit=2, key="${{ store.tenant }}"),
        ),
        {
            "node_name": "Greet",
            "namespace": NAMESPACE,
            "identifier": "b",
            "rate_limit": {"per_second": 2.5, "burst": 5},
        },
    ]

    await state_manager.upsert_graph("g", nodes, {}, concurrency=ConcurrencyModel(limit=3))

    body = server.requests[-1].body
    assert body["nodes"][0]["concurrency"] == {"limit": 2, "key": "${{ store.tenant }}"}
    assert "rate_limit" not in body["nodes"][0]
    assert body["nodes"][1]["rate_limit"] == {"per_second": 2.5, "burst": 5, "key": None}
    assert "concurrency" not in body["nodes"][1]
    assert body["concurrency"] == {"limit": 3, "key": None}


async def test_the_graphs_concurrency_may_follow_either_positional_order(
    server: FakeServer, state_manager: StateManager
) -> None:
    server.graph_responses = [(201, graph("VALID")), (201, graph("VALID"))]

    await state_manager.upsert_graph("g", [], {}, {"max_retries": 0}, concurrency={"limit": 1})
    await state_manager.upsert_graph("g", [], {}, 30, 0.5, concurrency={"limit": 4, "key": "${{ store.k }}"})

    first, second = (request.body for request in server.routes("graph/g") if request.method == "PUT")
    assert (first["concurrency"], first["retry_policy"]["max_retries"]) == ({"limit": 1, "key": None}, 0)
    assert second["concurrency"] == {"limit": 4, "key": "${{ store.k }}"}


@pytest.mark.parametrize(
    ("concurrency", "message"),
    [
        ({"limit": 0}, "Invalid concurrency: limit: Input should be greater than or equal to 1"),
        ({"limt": 2}, "Invalid concurrency: unknown field\\(s\\) limt"),
        ({"limit": 1, "key": " "}, "Invalid concurrency: key: Value error, key must not be empty"),
    ],
)
async def test_a_bad_graph_concurrency_is_refused_before_anything_is_sent(
    server: FakeServer, state_manager: StateManager, concurrency: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await state_manager.upsert_graph("g", [], {}, concurrency=concurrency)

    assert server.requests == []


@pytest.mark.parametrize(
    ("limits", "field"),
    [
        ({"concurrency": {"limit": 0}}, "concurrency.limit"),
        ({"concurrency": {"limit": 1, "key": ""}}, "concurrency.key"),
        ({"rate_limit": {"per_second": 0}}, "rate_limit.per_second"),
        ({"rate_limit": {"per_second": 1, "burst": 0}}, "rate_limit.burst"),
    ],
)
def test_a_node_with_a_bad_limit_is_refused_naming_the_field(limits: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match=field.replace(".", "\\.")):
        GraphNodeModel(node_name="Greet", namespace=NAMESPACE, identifier="a", **limits)


def test_a_rate_limit_bursts_one_by_default() -> None:
    assert RateLimitModel(per_second=0.5) == RateLimitModel(per_second=0.5, burst=1, key=None)


# ---------------------------------------------------------------- what is read


async def test_state_why_reads_the_answer_and_ignores_fields_it_does_not_know(
    server: FakeServer, state_manager: StateManager
) -> None:
    answer = {
        "state_id": "s1",
        "status": "CREATED",
        "waiting": True,
        "reason": "delayed",
        "detail": "It is not due yet.",
        "predicted_start_ms": 1_800_000_000_000,
        "blockers": [],
        "added_later": 1,
    }
    server.answer_once("^state/s1/why$", 200, answer)

    why = await state_manager.state_why("s1")

    (sent,) = server.routes("state/s1/why")
    assert sent.method == "GET"
    assert why.model_dump() == {key: value for key, value in answer.items() if key != "added_later"}
    assert why.predicted_start is not None and why.predicted_start.year == 2027


async def test_run_why_reads_the_groups(server: FakeServer, state_manager: StateManager) -> None:
    group = {
        "node": "Fetch",
        "namespace": NAMESPACE,
        "reason": "queued",
        "count": 3,
        "detail": "It is number 6 in the queue of node Fetch.",
        "predicted_start_ms": None,
        "blockers": [],
    }
    server.answer_once("^run/r1/why$", 200, {"run_id": "r1", "waiting": 3, "groups": [group]})

    why = await state_manager.run_why("r1")

    assert (why.run_id, why.waiting) == ("r1", 3)
    assert why.groups == [WaitingGroup(**group)]
    assert why.groups[0].predicted_start is None


async def test_an_answer_that_is_not_a_why_is_a_transport_error_naming_the_call(
    server: FakeServer, state_manager: StateManager
) -> None:
    server.answer_once("^run/r1/why$", 200, {"run_id": "r1"})

    with pytest.raises(TransportError) as caught:
        await state_manager.run_why("r1")

    assert str(caught.value) == f"GET {PREFIX}/run/r1/why: not a run's why: waiting: Field required"
