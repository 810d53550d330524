"""Our SDK's Runtime against a real server over loopback HTTP: the workflows a user runs."""

from __future__ import annotations

import time
import uuid

import pytest

from exospherehost import (
    GraphNodeModel,
    RetryPolicyModel,
    RetryStrategyEnum,
    Runtime,
    StateManager,
    StoreConfigModel,
    TriggerState,
    UnitesModel,
    UnitesStrategyEnum,
)
from tests.e2e.conftest import by_identifier, wait_run
from tests.e2e.nodes import Boom, Concat, Flaky, Gate, Later, Sign, Split, Upper
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.e2e

QUICK_RETRY = RetryPolicyModel(max_retries=1, strategy=RetryStrategyEnum.FIXED, backoff_factor=50)


def namespace() -> str:
    return f"e2e-{uuid.uuid4().hex[:8]}"


def node(ns: str, name: str, identifier: str, inputs: dict[str, str], *nexts: str) -> GraphNodeModel:
    return GraphNodeModel(
        node_name=name, namespace=ns, identifier=identifier, inputs=inputs, next_nodes=list(nexts)
    )


async def test_chain_with_placeholders_seed_trigger(sdk_env: LiveServer) -> None:
    ns = namespace()
    graph = [
        node(ns, "Upper", "a", {"text": "hello"}, "b"),
        node(ns, "Upper", "b", {"text": "${{ a.outputs.text }} world"}, "c"),
        node(ns, "Concat", "c", {"left": "${{ a.outputs.text }}", "right": "${{ b.outputs.text }}"}),
    ]
    async with Runtime(ns, "rt", [Upper, Concat], workers=2), StateManager(ns) as client:
        result = await client.upsert_graph("chain", graph, secrets={})
        assert result["validation_status"] == "VALID"
        run = await client.trigger("chain", state=TriggerState(identifier="a", inputs={"text": "seeded"}))
        states = await wait_run(client, run["run_id"], min_states=3)
    assert [s["status"] for s in states] == ["SUCCESS"] * 3
    assert by_identifier(states, "b")[0]["outputs"] == {"text": "SEEDED WORLD"}
    assert by_identifier(states, "c")[0]["outputs"] == {"text": "SEEDED+SEEDED WORLD"}


async def test_head_trigger_with_store_inputs_and_start_delay(sdk_env: LiveServer) -> None:
    ns = namespace()
    graph = [node(ns, "Concat", "root", {"left": "${{ store.who }}", "right": "${{ store.greeting }}"})]
    store_config = StoreConfigModel(required_keys=["who"], default_values={"greeting": "hi"})
    async with Runtime(ns, "rt", [Concat]), StateManager(ns) as client:
        await client.upsert_graph("stored", graph, secrets={}, store_config=store_config)
        started = time.monotonic()
        run = await client.trigger("stored", store={"who": "ada"}, start_delay=700)
        states = await wait_run(client, run["run_id"])
        elapsed = time.monotonic() - started
    assert states[0]["outputs"] == {"text": "ada+hi"}
    assert elapsed >= 0.7  # a behaviour (the delay is honoured), not a speed measurement


async def test_fan_out_of_ten_feeds_ten_children(sdk_env: LiveServer) -> None:
    ns = namespace()
    graph = [
        node(ns, "Split", "split", {"count": "10"}, "upper"),
        node(ns, "Upper", "upper", {"text": "${{ split.outputs.item }}"}),
    ]
    async with Runtime(ns, "rt", [Split, Upper], workers=4), StateManager(ns) as client:
        await client.upsert_graph("fan", graph, secrets={})
        run = await client.trigger("fan")
        states = await wait_run(client, run["run_id"], min_states=20)
    assert len(states) == 20
    assert [s["status"] for s in states] == ["SUCCESS"] * 20
    assert sorted(s["outputs"]["text"] for s in by_identifier(states, "upper")) == sorted(
        f"ITEM-{i}" for i in range(10)
    )


async def test_a_node_that_raises_is_retried_then_errored(sdk_env: LiveServer) -> None:
    ns = namespace()
    graph = [node(ns, "Boom", "boom", {"text": "this"}, "after"), node(ns, "Upper", "after", {"text": "x"})]
    async with Runtime(ns, "rt", [Boom, Upper]), StateManager(ns) as client:
        await client.upsert_graph("fails", graph, secrets={}, retry_policy=QUICK_RETRY)
        run = await client.trigger("fails")
        states = await wait_run(client, run["run_id"], min_states=2)
        runs = (await client.list_runs())["runs"]
    assert [s["status"] for s in states] == ["RETRY_CREATED", "ERRORED"]
    assert states[1]["error"] == "cannot handle this"
    assert states[1]["retry_count"] == 1
    assert next(r for r in runs if r["run_id"] == run["run_id"])["status"] == "FAILED"


async def test_a_transient_failure_succeeds_on_retry(sdk_env: LiveServer) -> None:
    ns = namespace()
    graph = [node(ns, "Flaky", "flaky", {"text": ns})]
    async with Runtime(ns, "rt", [Flaky]), StateManager(ns) as client:
        await client.upsert_graph("flaky", graph, secrets={}, retry_policy=QUICK_RETRY)
        run = await client.trigger("flaky")
        states = await wait_run(client, run["run_id"], min_states=2)
    assert [s["status"] for s in states] == ["RETRY_CREATED", "SUCCESS"]
    assert states[1]["outputs"] == {"text": "ok after 2"}


async def test_a_node_reads_its_secrets(sdk_env: LiveServer) -> None:
    ns = namespace()
    graph = [node(ns, "Sign", "sign", {"text": "doc"})]
    async with Runtime(ns, "rt", [Sign]), StateManager(ns) as client:
        await client.upsert_graph("signed", graph, secrets={"signing_key": "0123456789"})
        run = await client.trigger("signed")
        states = await wait_run(client, run["run_id"])
        fetched = await client.get_graph("signed")
    assert states[0]["outputs"] == {"signed": "doc:10"}
    assert fetched["secrets"] == {"signing_key": True}
    assert "0123456789" not in str(fetched)


async def test_join_after_fan_out_with_a_pruned_branch(sdk_env: LiveServer) -> None:
    ns = namespace()
    graph = [
        node(ns, "Upper", "root", {"text": "start"}, "split"),
        node(ns, "Split", "split", {"count": "3"}, "gate"),
        node(ns, "Gate", "gate", {"item": "${{ split.outputs.item }}"}),
        GraphNodeModel(
            node_name="Upper",
            namespace=ns,
            identifier="joined",
            inputs={"text": "${{ root.outputs.text }} joined"},
            unites=UnitesModel(identifier="root", strategy=UnitesStrategyEnum.ALL_SUCCESS),
        ),
    ]
    async with Runtime(ns, "rt", [Upper, Split, Gate], workers=4), StateManager(ns) as client:
        await client.upsert_graph("joins", graph, secrets={})
        run = await client.trigger("joins")
        states = await wait_run(client, run["run_id"], min_states=8)
    joined = by_identifier(states, "joined")
    assert len(joined) == 1
    assert joined[0]["status"] == "SUCCESS"
    assert joined[0]["outputs"] == {"text": "START JOINED"}
    assert sorted(s["status"] for s in by_identifier(states, "gate")) == ["PRUNED", "SUCCESS", "SUCCESS"]


async def test_join_fails_visibly_when_a_branch_errors(sdk_env: LiveServer) -> None:
    ns = namespace()
    graph = [
        node(ns, "Upper", "root", {"text": "start"}, "ok", "bad"),
        node(ns, "Upper", "ok", {"text": "fine"}),
        node(ns, "Boom", "bad", {"text": "bad"}),
        GraphNodeModel(
            node_name="Upper",
            namespace=ns,
            identifier="joined",
            inputs={"text": "x"},
            unites=UnitesModel(identifier="root"),
        ),
    ]
    no_retry = RetryPolicyModel(max_retries=0)
    async with Runtime(ns, "rt", [Upper, Boom], workers=3), StateManager(ns) as client:
        await client.upsert_graph("failjoin", graph, secrets={}, retry_policy=no_retry)
        run = await client.trigger("failjoin")
        states = await wait_run(client, run["run_id"], min_states=4)
    joined = by_identifier(states, "joined")
    assert [s["status"] for s in joined] == ["CANCELLED"]
    assert "bad" in joined[0]["error"]


async def test_requeue_after_signal_runs_the_node_again(sdk_env: LiveServer) -> None:
    ns = namespace()
    async with Runtime(ns, "rt", [Later]), StateManager(ns) as client:
        await client.upsert_graph("later", [node(ns, "Later", "later", {"text": ns})], secrets={})
        started = time.monotonic()
        run = await client.trigger("later")
        states = await wait_run(client, run["run_id"])
    assert [s["status"] for s in states] == ["SUCCESS"]
    assert time.monotonic() - started >= 0.3
