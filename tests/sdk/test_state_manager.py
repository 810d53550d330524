from __future__ import annotations

from typing import Any

import pytest

from exospherehost import (
    BadRequestError,
    CronTrigger,
    GraphNodeModel,
    GraphValidationError,
    RetryPolicyModel,
    StateManager,
    StoreConfigModel,
    TriggerState,
)

from .fake_server import API_KEY, BASE_URL, NAMESPACE, PREFIX, FakeServer, graph


def test_configuration_falls_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXOSPHERE_STATE_MANAGER_URI", BASE_URL)
    monkeypatch.setenv("EXOSPHERE_API_KEY", API_KEY)

    StateManager(NAMESPACE)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"key": "k"}, "State manager URI is not set"), ({"state_manager_uri": BASE_URL}, "API key is not set")],
)
def test_missing_configuration_is_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StateManager(NAMESPACE, **kwargs)


# ---------------------------------------------------------------------- trigger


async def test_head_trigger_sends_defaults(server: FakeServer, state_manager: StateManager) -> None:
    answer = await state_manager.trigger("greet")

    request = server.requests[-1]
    assert (request.method, request.path) == ("POST", f"{PREFIX}/graph/greet/trigger")
    assert request.body == {"inputs": {}, "store": {}, "start_delay": 0}
    assert answer == {"status": "CREATED", "run_id": "run-1"}


async def test_head_trigger_sends_inputs_store_and_delay(
    server: FakeServer, state_manager: StateManager
) -> None:
    await state_manager.trigger("greet", inputs={"name": "Ada"}, store={"k": "v"}, start_delay=500)

    assert server.requests[-1].body == {"inputs": {"name": "Ada"}, "store": {"k": "v"}, "start_delay": 500}


async def test_head_positional_call_of_sdk_0_0_3_works(
    server: FakeServer, state_manager: StateManager
) -> None:
    await state_manager.trigger("greet", {"name": "Ada"}, {"k": "v"}, 250)

    assert server.requests[-1].body == {"inputs": {"name": "Ada"}, "store": {"k": "v"}, "start_delay": 250}


async def test_seed_positional_call_of_sdk_0_0_2b1_works(
    server: FakeServer, state_manager: StateManager
) -> None:
    await state_manager.trigger("greet", TriggerState(identifier="root", inputs={"name": "Ada"}))
    await state_manager.trigger("greet", None, [TriggerState(identifier="a", inputs={})])

    assert server.requests[-2].body == {"states": [{"identifier": "root", "inputs": {"name": "Ada"}}]}
    assert server.requests[-1].body == {"states": [{"identifier": "a", "inputs": {}}]}


async def test_upsert_accepts_both_upstream_positional_orders(
    server: FakeServer, state_manager: StateManager
) -> None:
    server.graph_responses = [(201, graph("PENDING")), (200, graph("VALID"))]
    await state_manager.upsert_graph("g", NODES, {}, 5, 0.01)  # 0.0.2b1: timeout, interval
    server.graph_responses = [(201, graph("VALID"))]
    await state_manager.upsert_graph("g", NODES, {}, RetryPolicyModel(max_retries=1))  # 0.0.3

    assert [r.method for r in server.requests] == ["PUT", "GET", "PUT"]
    assert server.requests[-1].body["retry_policy"]["max_retries"] == 1


async def test_seed_trigger_with_one_state(server: FakeServer, state_manager: StateManager) -> None:
    await state_manager.trigger("greet", state=TriggerState(identifier="root", inputs={"name": "Ada"}))

    assert server.requests[-1].body == {"states": [{"identifier": "root", "inputs": {"name": "Ada"}}]}


async def test_seed_trigger_with_several_states(server: FakeServer, state_manager: StateManager) -> None:
    states = [TriggerState(identifier="a", inputs={}), TriggerState(identifier="b", inputs={"x": "1"})]

    await state_manager.trigger("greet", states=states)

    assert server.requests[-1].body == {
        "states": [{"identifier": "a", "inputs": {}}, {"identifier": "b", "inputs": {"x": "1"}}]
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {
                "state": TriggerState(identifier="a", inputs={}),
                "states": [TriggerState(identifier="b", inputs={})],
            },
            "Only one of state or states must be provided",
        ),
        ({"states": []}, "States must be a non-empty list"),
        ({"state": TriggerState(identifier="a", inputs={}), "inputs": {"x": "1"}}, "not both"),
        ({"states": [TriggerState(identifier="a", inputs={})], "start_delay": 10}, "not both"),
    ],
)
async def test_invalid_trigger_arguments(
    server: FakeServer, state_manager: StateManager, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await state_manager.trigger("greet", **kwargs)  # type: ignore[arg-type]

    assert server.requests == []


# ---------------------------------------------------------------------- upsert_graph


NODES = [
    GraphNodeModel(node_name="Greet", namespace=NAMESPACE, identifier="greet", inputs={"name": "x"}),
]


async def test_upsert_sends_nodes_and_secrets_only(server: FakeServer, state_manager: StateManager) -> None:
    server.graph_responses = [(201, graph("VALID"))]
    as_dict = {"node_name": "Log", "namespace": NAMESPACE, "identifier": " log ", "next_nodes": None}

    result = await state_manager.upsert_graph("g", [*NODES, as_dict], secrets={"token": "t"})

    request = server.requests[-1]
    assert (request.method, request.path) == ("PUT", f"{PREFIX}/graph/g")
    assert request.body == {
        "secrets": {"token": "t"},
        "nodes": [
            {
                "node_name": "Greet",
                "namespace": NAMESPACE,
                "identifier": "greet",
                "inputs": {"name": "x"},
                "next_nodes": None,
                "unites": None,
            },
            {
                "node_name": "Log",
                "namespace": NAMESPACE,
                "identifier": "log",
                "inputs": {},
                "next_nodes": None,
                "unites": None,
            },
        ],
    }
    assert result["validation_status"] == "VALID"


async def test_upsert_sends_policy_store_and_triggers_when_given(
    server: FakeServer, state_manager: StateManager
) -> None:
    server.graph_responses = [(201, graph("VALID"))]

    await state_manager.upsert_graph(
        "g",
        NODES,
        secrets={},
        retry_policy=RetryPolicyModel(max_retries=1),
        store_config=StoreConfigModel(required_keys=["k"]),
        triggers=[CronTrigger(expression="*/5 * * * *")],
    )

    body = server.requests[-1].body
    assert body["retry_policy"]["max_retries"] == 1
    assert body["retry_policy"]["strategy"] == "EXPONENTIAL"
    assert body["store_config"] == {"required_keys": ["k"], "default_values": {}}
    assert body["triggers"] == [{"type": "CRON", "value": {"expression": "*/5 * * * *"}}]


async def test_upsert_polls_while_pending(server: FakeServer, state_manager: StateManager) -> None:
    server.graph_responses = [(201, graph("PENDING")), (200, graph("PENDING")), (200, graph("VALID"))]

    result = await state_manager.upsert_graph("g", NODES, secrets={}, polling_interval=0.01)

    assert [r.method for r in server.requests] == ["PUT", "GET", "GET"]
    assert result["validation_status"] == "VALID"


async def test_upsert_invalid_graph_raises(server: FakeServer, state_manager: StateManager) -> None:
    server.graph_responses = [(201, graph("INVALID", ["Node Greet in namespace test does not exist."]))]

    with pytest.raises(GraphValidationError, match="does not exist") as caught:
        await state_manager.upsert_graph("g", NODES, secrets={})

    assert caught.value.validation_status == "INVALID"
    assert caught.value.validation_errors == ["Node Greet in namespace test does not exist."]


async def test_upsert_pending_past_the_timeout_raises(
    server: FakeServer, state_manager: StateManager
) -> None:
    server.graph_responses = [(201, graph("PENDING"))] + [(200, graph("PENDING"))] * 100

    with pytest.raises(GraphValidationError, match="timed out") as caught:
        await state_manager.upsert_graph(
            "g", NODES, secrets={}, validation_timeout=0.05, polling_interval=0.01
        )

    assert caught.value.validation_status == "PENDING"


async def test_upsert_rejected_graph_raises_bad_request(
    server: FakeServer, state_manager: StateManager
) -> None:
    server.fail(r"^graph/g$", 400, detail="Error validating graph template: Node b is not acyclic")

    with pytest.raises(BadRequestError, match="Node b is not acyclic") as caught:
        await state_manager.upsert_graph("g", NODES, secrets={})

    assert caught.value.status_code == 400


async def test_upsert_validates_dict_nodes_before_sending(
    server: FakeServer, state_manager: StateManager
) -> None:
    bad = {"node_name": "Greet", "namespace": NAMESPACE, "identifier": "store"}

    with pytest.raises(ValueError, match="reserved word 'store'"):
        await state_manager.upsert_graph("g", [bad], secrets={})

    assert server.requests == []


async def test_get_graph(server: FakeServer, state_manager: StateManager) -> None:
    server.graph_responses = [(200, graph("VALID"))]

    assert (await state_manager.get_graph("g"))["validation_status"] == "VALID"
    assert server.requests[-1].path == f"{PREFIX}/graph/g"


# ---------------------------------------------------------------------- reads


async def test_read_endpoints_use_the_documented_paths(
    server: FakeServer, state_manager: StateManager
) -> None:
    await state_manager.list_runs()
    await state_manager.list_runs(page=3, size=50)
    await state_manager.get_run_graph("run-1")
    await state_manager.list_states()
    await state_manager.list_states(run_id="run-1")

    assert [r.path.removeprefix(PREFIX) for r in server.requests] == [
        "/runs/1/20",
        "/runs/3/50",
        "/states/run/run-1/graph",
        "/states/",
        "/states/run/run-1",
    ]
    assert {r.method for r in server.requests} == {"GET"}


async def test_list_runs_refuses_page_zero(state_manager: StateManager) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        await state_manager.list_runs(page=0)
