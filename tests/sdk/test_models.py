from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from exospherehost import (
    CronTrigger,
    GraphNodeModel,
    PruneSignal,
    ReQueueAfterSignal,
    RetryPolicyModel,
    RetryStrategyEnum,
    StoreConfigModel,
    UnitesModel,
    UnitesStrategyEnum,
)


def node(**overrides: object) -> GraphNodeModel:
    fields: dict[str, object] = {"node_name": "Greet", "namespace": "ns", "identifier": "greet"}
    return GraphNodeModel.model_validate({**fields, **overrides})


def test_graph_node_defaults_and_trimming() -> None:
    model = node(node_name="  Greet ", identifier=" greet ", next_nodes=[" a", "b "])

    assert model.node_name == "Greet"
    assert model.identifier == "greet"
    assert model.next_nodes == ["a", "b"]
    assert model.inputs == {}
    assert model.unites is None
    assert node().next_nodes is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"node_name": "  "}, "Node name cannot be empty"),
        ({"identifier": ""}, "Node identifier cannot be empty"),
        ({"identifier": " store "}, "Node identifier cannot be reserved word 'store'"),
        ({"next_nodes": ["a", " "]}, "Next node identifier cannot be empty"),
        ({"next_nodes": ["a", " a"]}, "Next node identifier a is not unique"),
        ({"unites": {"identifier": " "}}, "Unites identifier cannot be empty"),
    ],
)
def test_graph_node_rejects(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        node(**overrides)


def test_unites_is_trimmed_and_defaults_to_all_success() -> None:
    model = node(unites={"identifier": " root "})

    assert model.unites == UnitesModel(identifier="root", strategy=UnitesStrategyEnum.ALL_SUCCESS)


def test_retry_policy_defaults() -> None:
    policy = RetryPolicyModel()

    assert policy.model_dump(mode="json") == {
        "max_retries": 3,
        "strategy": "EXPONENTIAL",
        "backoff_factor": 2000,
        "exponent": 2,
        "max_delay": None,
    }
    assert len(RetryStrategyEnum) == 9


@pytest.mark.parametrize(
    "fields",
    [
        {"max_retries": -1},
        {"backoff_factor": 0},
        {"exponent": 0},
        {"max_delay": 0},
        {"strategy": "SOMETIMES"},
    ],
)
def test_retry_policy_bounds(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RetryPolicyModel.model_validate(fields)


def test_retry_policy_accepts_zero_retries() -> None:
    assert RetryPolicyModel(max_retries=0).max_retries == 0


def test_store_config_trims_keys() -> None:
    config = StoreConfigModel(required_keys=[" a ", "b"], default_values={" c ": "1"})

    assert config.required_keys == ["a", "b"]
    assert config.default_values == {"c": "1"}


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ([" "], "Key cannot be empty or contain only whitespace"),
        (["a.b"], "Key 'a.b' cannot contain '.' character"),
        (["a", " a"], "Key 'a' is duplicated"),
    ],
)
def test_store_config_rejects_bad_keys(keys: list[str], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        StoreConfigModel(required_keys=keys)
    with pytest.raises(ValidationError, match=message):
        StoreConfigModel(default_values=dict.fromkeys(keys, "v"))


def test_cron_trigger_needs_an_expression() -> None:
    assert CronTrigger(expression="0 * * * *").expression == "0 * * * *"
    with pytest.raises(ValidationError):
        CronTrigger.model_validate({})


def test_prune_signal_defaults_to_a_fresh_empty_dict() -> None:
    first, second = PruneSignal(), PruneSignal()
    first.data["x"] = 1

    assert second.data == {}
    assert PruneSignal({"k": "v"}).data == {"k": "v"}


@pytest.mark.parametrize("delay", [timedelta(0), timedelta(seconds=-1)])
def test_requeue_signal_needs_a_positive_delay(delay: timedelta) -> None:
    with pytest.raises(ValueError, match="Delay must be greater than 0"):
        ReQueueAfterSignal(delay)


def test_requeue_signal_delay_in_milliseconds_never_rounds_to_zero() -> None:
    assert ReQueueAfterSignal(timedelta(seconds=2)).delay_ms == 2000
    assert ReQueueAfterSignal(timedelta(microseconds=1)).delay_ms == 1
    assert "0:00:02" in str(ReQueueAfterSignal(timedelta(seconds=2)))
