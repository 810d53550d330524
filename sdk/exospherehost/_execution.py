"""Running one state through a node, without any I/O of its own.

`execute_state` turns everything that can happen to a state (bad inputs, missing secrets, a
signal, an exception, odd return values) into one `Outcome`; the runtime then reports it.
What will be sent is checked to be strict JSON here, so that a node that returns or signals
something unsendable fails at once instead of its report failing on the way out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from ._attempt_log import capture_logs, error_details
from .errors import ExosphereError
from .node import BaseNode, RunInThread, needs_secrets
from .signals import PruneSignal, ReQueueAfterSignal

__all__ = [
    "Errored",
    "Executed",
    "Outcome",
    "Pruned",
    "Requeued",
    "describe_exception",
    "execute_state",
    "json_problem",
    "normalise_outputs",
]


@dataclass(frozen=True)
class Executed:
    """The node returned; `outputs` are the dumped `Outputs` models (possibly none)."""

    outputs: list[dict[str, Any]]


@dataclass(frozen=True)
class Errored:
    """The state failed; `error` is the message reported to the server.

    `exception` is what the node raised, if it raised, kept for the runtime's log. `log_level` is
    the level the runtime logs the failure at: ERROR for a bug in the node's code that a retry
    cannot fix (it returned or signalled something that cannot be sent).
    """

    error: str
    exception: BaseException | None = field(default=None, compare=False)
    log_level: int = field(default=logging.WARNING, compare=False)
    # The exception's type, traceback and the attempt's log lines, secrets redacted (_attempt_log).
    details: dict[str, Any] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Pruned:
    """The node raised `PruneSignal`."""

    data: dict[str, Any]


@dataclass(frozen=True)
class Requeued:
    """The node raised `ReQueueAfterSignal`."""

    delay_ms: int


Outcome = Executed | Errored | Pruned | Requeued

SecretsLoader = Callable[[], Awaitable[Mapping[str, Any]]]


async def execute_state(
    node: type[BaseNode],
    raw_inputs: Any,
    load_secrets: SecretsLoader,
    run_in_thread: RunInThread[Any] | None = None,
) -> Outcome:
    """Validate inputs, fetch secrets if the node needs any, run the node, classify the result.

    A node whose `execute` is a plain `def` is called through `run_in_thread` (the runtime's
    worker threads; `asyncio.to_thread` by default). Never raises for anything the node or the
    inputs do (`asyncio.CancelledError` excepted).
    """
    try:
        inputs = node.Inputs.model_validate(raw_inputs if raw_inputs is not None else {})
    except ValidationError as exc:
        return Errored(f"Invalid inputs for node {node.__name__}: {exc}")
    secrets_or_error = await _load_secrets(node, load_secrets)
    if isinstance(secrets_or_error, Errored):
        return secrets_or_error
    with capture_logs() as lines:
        try:
            result = await node()._execute(inputs, secrets_or_error, run_in_thread)
            outputs = [output.model_dump(mode="json") for output in normalise_outputs(node, result)]
        except PruneSignal as signal:
            return _pruned(node, signal)
        except ReQueueAfterSignal as signal:
            return Requeued(signal.delay_ms)
        except Exception as exc:
            secrets = secrets_or_error.model_dump().values()
            return Errored(describe_exception(exc), exc, details=error_details(exc, lines, secrets))
    if problem := json_problem(outputs):
        return _unsendable(f"Outputs of node {node.__name__} are not JSON-serialisable: {problem}")
    return Executed(outputs)


def _pruned(node: type[BaseNode], signal: PruneSignal) -> Outcome:
    if problem := json_problem(signal.data):
        return _unsendable(f"PruneSignal data of node {node.__name__} is not JSON-serialisable: {problem}")
    return Pruned(signal.data)


def json_problem(value: object) -> str | None:
    """Why `value` is not strict JSON (NaN and Infinity are refused too), or None if it is."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        return describe_exception(exc)
    return None


def _unsendable(error: str) -> Errored:
    """A node returned or signalled something that cannot be sent: a bug in the node's code."""
    return Errored(error, log_level=logging.ERROR)


async def _load_secrets(node: type[BaseNode], load_secrets: SecretsLoader) -> BaseModel | Errored:
    if not needs_secrets(node):
        return node.Secrets()
    try:
        raw = await load_secrets()
    except ExosphereError as exc:
        return Errored(f"Could not fetch secrets for node {node.__name__}: {exc}")
    try:
        return node.Secrets.model_validate(dict(raw))
    except ValidationError as exc:
        # Never put pydantic's message in the error: it quotes the input, i.e. secret values.
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        return Errored(f"Invalid secrets for node {node.__name__}: {problems}")


def normalise_outputs(node: type[BaseNode], result: object) -> list[BaseModel]:
    """None -> [], one model -> [model], a list or tuple of models -> list.

    Raises:
        TypeError: If the node returned anything else.
    """
    if result is None:
        return []
    items: list[object] = list(result) if isinstance(result, list | tuple) else [result]
    outputs: list[BaseModel] = []
    for item in items:
        if not isinstance(item, BaseModel):
            raise TypeError(
                f"Node {node.__name__} returned {type(item).__name__}; expected "
                f"{node.__name__}.Outputs, a list of them, or None"
            )
        outputs.append(item)
    return outputs


def describe_exception(exc: BaseException) -> str:
    """`str(exc)`, or the exception's type name when the message is empty."""
    return str(exc) or type(exc).__name__
