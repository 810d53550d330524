"""The typed, forgiving entry points of `StateManager`: one overload per upstream form of `trigger`
and `upsert_graph` (what editors and mypy see), and plain dicts for the graph's settings."""

from __future__ import annotations

import inspect
import textwrap
import typing
from pathlib import Path
from typing import Any

import pytest

from exospherehost import RetryPolicyModel, StateManager, StoreConfigModel

from .fake_server import FakeServer, graph
from .typecheck import mypy_error_lines

NODES = [{"node_name": "Greet", "namespace": "test", "identifier": "greet"}]


def parameters(function: Any) -> list[str]:
    return [name for name in inspect.signature(function).parameters if name != "self"]


def test_trigger_has_one_overload_per_upstream_form() -> None:
    forms = [parameters(form) for form in typing.get_overloads(StateManager.trigger)]

    assert forms == [
        # 0.0.3 and 0.0.2b1, each with our keyword-only additions
        ["graph_name", "inputs", "store", "start_delay", "idempotency_key", "priority"],
        ["graph_name", "state", "states", "idempotency_key", "priority"],
    ]


def test_upsert_graph_has_one_overload_per_upstream_order() -> None:
    forms = [parameters(form) for form in typing.get_overloads(StateManager.upsert_graph)]

    assert forms == [
        [
            "graph_name",
            "graph_nodes",
            "secrets",
            "retry_policy",
            "store_config",
            "triggers",
            "validation_timeout",
            "polling_interval",
            "concurrency",
        ],  # 0.0.3, with our keyword-only addition
        ["graph_name", "graph_nodes", "secrets", "validation_timeout", "polling_interval", "concurrency"],
    ]


USER_CODE = textwrap.dedent(
    """
    from exospherehost import RetryPolicyModel, StateManager, TriggerState


    async def both_forms(sm: StateManager) -> None:
        await sm.trigger("g", {"name": "Ada"}, {"k": "v"}, 250)
        await sm.trigger("g", inputs={"name": "Ada"}, idempotency_key="order-1")
        await sm.trigger("g", TriggerState(identifier="a", inputs={}))
        await sm.trigger("g", states=[TriggerState(identifier="a", inputs={})])
        await sm.upsert_graph("g", [], {}, RetryPolicyModel(), {"required_keys": ["k"]}, None, 60, 1)
        await sm.upsert_graph("g", [{"node_name": "N"}], {}, retry_policy={"max_retries": 1})
        await sm.upsert_graph("g", [], {}, 120, 2)


    async def mistakes(sm: StateManager) -> None:
        await sm.trigger("g", inputs={"name": "Ada"}, state=TriggerState(identifier="a", inputs={}))
        await sm.trigger("g", start_delay="soon")
        await sm.upsert_graph("g", [], {}, validation_timeout="long")
    """
)


@pytest.mark.timeout(300)
def test_mypy_sees_both_forms_and_refuses_mixtures(tmp_path: Path) -> None:
    lines, output = mypy_error_lines(USER_CODE, tmp_path)

    mistakes = next(i for i, line in enumerate(USER_CODE.splitlines(), 1) if "async def mistakes" in line)
    assert lines == [mistakes + 1, mistakes + 2, mistakes + 3], output


# ---------------------------------------------------------------------- dicts for the settings


async def test_retry_policy_store_config_and_triggers_may_be_dicts(
    server: FakeServer, state_manager: StateManager
) -> None:
    server.graph_responses = [(201, graph("VALID"))]

    await state_manager.upsert_graph(
        "g",
        NODES,
        {},
        retry_policy={"max_retries": 2, "strategy": "FIXED", "backoff_factor": 100},
        store_config={"required_keys": [" customer "], "default_values": {"currency": "EUR"}},
        triggers=[{"expression": "0 9 * * 1-5"}],
    )

    body = server.requests[-1].body
    assert body["retry_policy"] == RetryPolicyModel(
        max_retries=2, strategy="FIXED", backoff_factor=100
    ).model_dump(mode="json")
    assert body["store_config"] == {"required_keys": ["customer"], "default_values": {"currency": "EUR"}}
    assert body["store_config"] == StoreConfigModel(
        required_keys=["customer"], default_values={"currency": "EUR"}
    ).model_dump(mode="json")
    assert body["triggers"] == [{"type": "CRON", "value": {"expression": "0 9 * * 1-5"}}]


async def test_a_positional_dict_follows_the_0_0_3_order(
    server: FakeServer, state_manager: StateManager
) -> None:
    server.graph_responses = [(201, graph("VALID"))]

    await state_manager.upsert_graph("g", NODES, {}, {"max_retries": 0}, {"required_keys": ["k"]})

    body = server.requests[-1].body
    assert body["retry_policy"]["max_retries"] == 0
    assert body["store_config"]["required_keys"] == ["k"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"retry_policy": {"max_retries": -1}},
            r"^Invalid retry_policy: max_retries: .*greater than or equal",
        ),
        ({"retry_policy": {"max_retrys": 1}}, r"^Invalid retry_policy: unknown field\(s\) max_retrys"),
        ({"retry_policy": {"strategy": "SOMETIMES"}}, r"^Invalid retry_policy: strategy: "),
        ({"store_config": {"required_keys": ["a.b"]}}, r"^Invalid store_config: required_keys: .*'\.'"),
        ({"store_config": ["k"]}, r"^Invalid store_config: expected a StoreConfigModel or a dict"),
        ({"triggers": [{"cron": "* * * * *"}]}, r"^Invalid triggers\[0\]: unknown field\(s\) cron"),
    ],
)
async def test_a_bad_settings_dict_is_a_value_error_naming_the_field(
    server: FakeServer, state_manager: StateManager, settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await state_manager.upsert_graph("g", NODES, {}, **settings)

    assert server.requests == []  # refused before anything is sent
