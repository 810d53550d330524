from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from exospherehost import BaseNode, Runtime

from .fake_server import API_KEY, BASE_URL, NAMESPACE
from .nodes import Greet, UsesSecret


def runtime(*nodes: Any, **kwargs: Any) -> Runtime:
    options = {"state_manager_uri": BASE_URL, "key": API_KEY, **kwargs}
    return Runtime(NAMESPACE, "rt", list(nodes), **options)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "Batch size should be at least 1"),
        ({"workers": 0}, "Workers should be at least 1"),
        ({"poll_interval": -1}, "Poll interval should not be negative"),
        ({"long_poll_ms": 30_001}, "long_poll_ms should be between 0 and 30000"),
        ({"long_poll_ms": -1}, "long_poll_ms should be between 0 and 30000"),
        ({"heartbeat_interval": 0}, "Heartbeat interval should be positive"),
        ({"report_retries": -1}, "Report retries should not be negative"),
        ({"blocked_loop_warning": 0}, "blocked_loop_warning should be positive"),
    ],
)
def test_invalid_arguments_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        runtime(Greet, **kwargs)


def test_uri_and_key_are_required() -> None:
    with pytest.raises(ValueError, match="State manager URI is not set"):
        Runtime(NAMESPACE, "rt", [Greet], key=API_KEY)
    with pytest.raises(ValueError, match="API key is not set"):
        Runtime(NAMESPACE, "rt", [Greet], state_manager_uri=BASE_URL)


def test_uri_and_key_fall_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXOSPHERE_STATE_MANAGER_URI", BASE_URL)
    monkeypatch.setenv("EXOSPHERE_API_KEY", API_KEY)

    Runtime(NAMESPACE, "rt", [Greet])


def test_heartbeats_can_be_disabled() -> None:
    runtime(Greet, heartbeat_interval=None)


class NotANode:
    pass


class InputsNotAModel(BaseNode):
    Inputs = dict  # type: ignore[assignment]

    async def execute(self) -> None:
        return None


class NonStrFields(BaseNode):
    class Inputs(BaseModel):
        count: int

    class Outputs(BaseModel):
        ok: bool

    class Secrets(BaseModel):
        token: bytes

    async def execute(self) -> None:
        return None


class NoExecute(BaseNode):
    pass


class YieldsOutputs(BaseNode):
    def execute(self) -> Iterator[BaseModel]:  # type: ignore[override]
        yield self.Outputs()


class YieldsOutputsAsync(BaseNode):
    async def execute(self) -> AsyncIterator[BaseModel]:  # type: ignore[override]
        yield self.Outputs()


@pytest.mark.parametrize(
    ("node", "messages"),
    [
        (NotANode, ["NotANode does not inherit from exospherehost.BaseNode"]),
        (
            InputsNotAModel,
            ["InputsNotAModel does not have an Inputs class that inherits from pydantic.BaseModel"],
        ),
        (
            NonStrFields,
            [
                "NonStrFields.Inputs field 'count' must be of type str",
                "NonStrFields.Outputs field 'ok' must be of type str",
                "NonStrFields.Secrets field 'token' must be of type str",
            ],
        ),
        (NoExecute, ["NoExecute does not implement execute()"]),
        (YieldsOutputs, ["YieldsOutputs.execute must return its outputs, not yield them"]),
        (YieldsOutputsAsync, ["YieldsOutputsAsync.execute must return its outputs, not yield them"]),
    ],
)
def test_invalid_nodes_are_refused_with_every_problem(node: Any, messages: list[str]) -> None:
    with pytest.raises(ValueError, match=r"^Following errors while validating nodes: ") as caught:
        runtime(node)

    for message in messages:
        assert message in str(caught.value)


def test_duplicate_node_names_are_refused() -> None:
    def make() -> type[BaseNode]:
        class Twin(BaseNode):
            async def execute(self) -> None:
                return None

        return Twin

    with pytest.raises(ValueError, match=r"Duplicate node class names found: \['Twin'\]"):
        runtime(make(), make())


def test_valid_nodes_are_accepted() -> None:
    runtime(Greet, UsesSecret)


def test_the_runtime_leaves_logging_configuration_alone() -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level

    runtime(Greet)

    assert root.handlers == handlers
    assert root.level == level
