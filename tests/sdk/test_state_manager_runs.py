"""`StateManager`: cancelling runs, idempotent triggers, node timeouts in graph templates."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from exospherehost import (
    ConflictError,
    GraphNodeModel,
    NotFoundError,
    StateManager,
    TriggerState,
)

from .fake_server import NAMESPACE, PREFIX, FakeServer, graph

IDEMPOTENCY_HEADER = "idempotency-key"

# ---------------------------------------------------------------------- cancel_run


async def test_cancel_run_posts_to_the_run_and_returns_the_answer(
    server: FakeServer, state_manager: StateManager
) -> None:
    answer = {"run_id": "run-1", "status": "CANCELLED", "cancelled_count": 3}
    server.answer_once("^run/run-1/cancel$", 200, answer)

    result = await state_manager.cancel_run("run-1")

    request = server.requests[-1]
    assert (request.method, request.path, request.body) == ("POST", f"{PREFIX}/run/run-1/cancel", None)
    assert result == answer


async def test_cancel_run_of_an_unknown_run_is_not_found(
    server: FakeServer, state_manager: StateManager
) -> None:
    server.fail("^run/nope/cancel$", 404, detail="Run nope not found")

    with pytest.raises(NotFoundError, match="Run nope not found"):
        await state_manager.cancel_run("nope")


async def test_cancel_run_of_a_finished_run_is_a_conflict_naming_its_status(
    server: FakeServer, state_manager: StateManager
) -> None:
    server.fail("^run/run-1/cancel$", 409, detail="Run run-1 already ended: SUCCESS")

    with pytest.raises(ConflictError) as caught:
        await state_manager.cancel_run("run-1")

    assert caught.value.status_code == 409
    assert "SUCCESS" in str(caught.value)


# ---------------------------------------------------------------------- idempotent triggers


async def test_trigger_sends_the_idempotency_key_header(
    server: FakeServer, state_manager: StateManager
) -> None:
    await state_manager.trigger("greet", inputs={"name": "Ada"}, idempotency_key="order-42")

    request = server.requests[-1]
    assert request.headers.get(IDEMPOTENCY_HEADER) == "order-42"
    assert request.body == {"inputs": {"name": "Ada"}, "store": {}, "start_delay": 0}


async def test_trigger_without_a_key_sends_no_idempotency_header(
    server: FakeServer, state_manager: StateManager
) -> None:
    await state_manager.trigger("greet", inputs={"name": "Ada"})

    assert IDEMPOTENCY_HEADER not in server.requests[-1].headers


async def test_both_upstream_positional_forms_take_an_idempotency_key(
    server: FakeServer, state_manager: StateManager
) -> None:
    await state_manager.trigger("greet", {"name": "Ada"}, {"k": "v"}, 250, idempotency_key="head")
    await state_manager.trigger("greet", TriggerState(identifier="root", inputs={}), idempotency_key="seed")

    head, seed = server.requests[-2:]
    assert (head.body, head.headers.get(IDEMPOTENCY_HEADER)) == (
        {"inputs": {"name": "Ada"}, "store": {"k": "v"}, "start_delay": 250},
        "head",
    )
    assert (seed.body, seed.headers.get(IDEMPOTENCY_HEADER)) == (
        {"states": [{"identifier": "root", "inputs": {}}]},
        "seed",
    )


async def test_an_empty_idempotency_key_is_refused_before_sending(
    server: FakeServer, state_manager: StateManager
) -> None:
    with pytest.raises(ValueError, match="idempotency_key"):
        await state_manager.trigger("greet", idempotency_key="")

    assert server.requests == []


# ---------------------------------------------------------------------- node timeouts


async def test_upsert_sends_timeout_seconds_only_for_nodes_that_set_it(
    server: FakeServer, state_manager: StateManager
) -> None:
    server.graph_responses = [(201, graph("VALID"))]
    nodes = [
        GraphNodeModel(node_name="Greet", namespace=NAMESPACE, identifier="a", timeout_seconds=30),
        {"node_name": "Greet", "namespace": NAMESPACE, "identifier": "b", "timeout_seconds": 5},
        GraphNodeModel(node_name="Greet", namespace=NAMESPACE, identifier="c"),
    ]

    await state_manager.upsert_graph("g", nodes, secrets={})

    sent = server.requests[-1].body["nodes"]
    assert [node.get("timeout_seconds") for node in sent] == [30, 5, None]
    assert "timeout_seconds" not in sent[2]


@pytest.mark.parametrize("value", [0, -1])
def test_timeout_seconds_must_be_positive(value: int) -> None:
    with pytest.raises(ValidationError, match="timeout_seconds"):
        GraphNodeModel(node_name="Greet", namespace=NAMESPACE, identifier="a", timeout_seconds=value)
