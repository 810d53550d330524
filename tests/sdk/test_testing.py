from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from exospherehost import PruneSignal, ReQueueAfterSignal
from exospherehost.testing import run_node

from .nodes import Fails, FanOut, Greet, Nothing, Prunes, Requeues, ReturnsJunk, UsesSecret


async def test_returns_the_outputs_as_dicts() -> None:
    assert await run_node(Greet, {"name": "Ada"}) == [{"message": "hello Ada"}]


async def test_fan_out_and_none() -> None:
    assert await run_node(FanOut, {"count": "2"}) == [{"index": "0"}, {"index": "1"}]
    assert await run_node(Nothing, {}) == []


async def test_secrets_are_passed() -> None:
    assert await run_node(UsesSecret, {}, secrets={"api_token": "t"}) == [{"token": "t"}]


async def test_invalid_inputs_and_missing_secrets_raise_validation_errors() -> None:
    with pytest.raises(ValidationError):
        await run_node(Greet, {"name": 3})
    with pytest.raises(ValidationError):
        await run_node(UsesSecret, {})


async def test_signals_and_exceptions_propagate() -> None:
    with pytest.raises(PruneSignal) as pruned:
        await run_node(Prunes, {})
    with pytest.raises(ReQueueAfterSignal) as requeued:
        await run_node(Requeues, {})
    with pytest.raises(ValueError, match="boom"):
        await run_node(Fails, {"message": "boom"})

    assert pruned.value.data == {"reason": "nothing to do"}
    assert requeued.value.delay == timedelta(seconds=1.5)


async def test_bad_return_value_raises_type_error() -> None:
    with pytest.raises(TypeError, match="returned str"):
        await run_node(ReturnsJunk, {})


async def test_invalid_node_class_is_refused() -> None:
    with pytest.raises(ValueError, match=r"does not inherit from exospherehost\.BaseNode"):
        await run_node(object, {})  # type: ignore[arg-type]
