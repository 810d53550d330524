"""`BaseNode`: the unit of work a runtime executes, and the rules a node class must follow."""

from __future__ import annotations

import asyncio
import inspect
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias, TypeVar, cast

from pydantic import BaseModel

__all__ = ["BaseNode", "NodeResult", "is_sync_node"]

T = TypeVar("T")

NodeResult: TypeAlias = BaseModel | Sequence[BaseModel] | None
"""What `execute` returns: one `Outputs`, a list of them, or None."""

RunInThread = Callable[[Callable[[], T]], Awaitable[T]]


class BaseNode(ABC):
    """Base class of every node.

    A node declares three pydantic models, all of whose fields are `str`:

    - `Inputs`: the values the graph passes in (validated before `execute` runs);
    - `Outputs`: what `execute` returns (one instance, a list of them to fan out, or None);
    - `Secrets`: the graph secrets the node needs (fetched only if it declares any).

    The runtime creates a new instance per state, sets `self.inputs` and `self.secrets`, and
    runs `execute()`: declared with `async def`, it is awaited on the runtime's event loop (it
    must not block: no `time.sleep`, no blocking I/O, no long CPU work there); declared with a
    plain `def`, it runs in one of the runtime's worker threads, so it may block as long as it
    needs. Raise `PruneSignal` or `ReQueueAfterSignal` to steer the run; any other exception
    reports the state as errored. The node's name is its class name.

    Example:
        ```python
        class Greet(BaseNode):
            class Inputs(BaseModel):
                name: str

            class Outputs(BaseModel):
                message: str

            inputs: Inputs  # optional: lets a type checker see the fields

            async def execute(self) -> Outputs:
                return self.Outputs(message=f"hello {self.inputs.name}")
        ```
    """

    class Inputs(BaseModel):
        """The node's inputs. Override with `str` fields."""

    class Outputs(BaseModel):
        """The node's outputs. Override with `str` fields."""

    class Secrets(BaseModel):
        """The secrets the node needs. Override with `str` fields."""

    inputs: BaseModel
    secrets: BaseModel

    @abstractmethod
    def execute(self) -> NodeResult | Awaitable[NodeResult]:
        """Do the work, reading `self.inputs` and `self.secrets`.

        Declare it `async def execute(self)` for code that awaits, or `def execute(self)` for
        blocking code (run in a worker thread).

        Returns:
            An `Outputs` instance, a list of them (one next branch per element), or None
            (the same as an empty list: the state succeeds with no outputs and its next nodes
            still run once, as upstream; raise `PruneSignal` to end the branch instead).
        """

    async def _execute(
        self, inputs: BaseModel, secrets: BaseModel, run_in_thread: RunInThread[Any] | None = None
    ) -> NodeResult:
        """Set `self.inputs` and `self.secrets`, then run `execute()`: awaited when it is a
        coroutine function, else called through `run_in_thread` (default `asyncio.to_thread`)."""
        self.inputs = inputs
        self.secrets = secrets
        if inspect.iscoroutinefunction(self.execute):
            result = self.execute()
        else:
            result = await (run_in_thread or asyncio.to_thread)(self.execute)
        if inspect.isawaitable(result):  # a coroutine function, or a wrapped one that hides it
            return cast(NodeResult, await result)
        return cast(NodeResult, result)


def is_sync_node(node: type[BaseNode]) -> bool:
    """Whether the node's `execute` is a plain `def` (run in a worker thread)."""
    return not inspect.iscoroutinefunction(node.execute)


def needs_secrets(node: type[BaseNode]) -> bool:
    """Whether the node declares any secret (and so the runtime must fetch them)."""
    return bool(node.Secrets.model_fields)


def validate_nodes(nodes: Sequence[Any]) -> list[str]:
    """Check node classes against the rules a runtime relies on; return one message per problem."""
    errors: list[str] = []
    for node in nodes:
        errors.extend(_node_errors(node))
    names = Counter(getattr(node, "__name__", repr(node)) for node in nodes)
    duplicates = sorted(name for name, count in names.items() if count > 1)
    if duplicates:
        errors.append(f"Duplicate node class names found: {duplicates}")
    return errors


def _node_errors(node: Any) -> list[str]:
    name = getattr(node, "__name__", repr(node))
    if not (inspect.isclass(node) and issubclass(node, BaseNode)):
        return [f"{name} does not inherit from exospherehost.BaseNode"]
    errors: list[str] = []
    execute = getattr(node, "execute", None)
    if inspect.isabstract(node):
        errors.append(f"{name} does not implement execute()")
    elif not callable(execute):
        errors.append(f"{name}.execute must be a method declared with 'def' or 'async def'")
    elif inspect.isgeneratorfunction(execute) or inspect.isasyncgenfunction(execute):
        errors.append(f"{name}.execute must return its outputs, not yield them")
    for model_name in ("Inputs", "Outputs", "Secrets"):
        errors.extend(_model_errors(name, model_name, getattr(node, model_name, None)))
    return errors


def _model_errors(node_name: str, model_name: str, model: Any) -> list[str]:
    if not (inspect.isclass(model) and issubclass(model, BaseModel)):
        return [f"{node_name} does not have an {model_name} class that inherits from pydantic.BaseModel"]
    return [
        f"{node_name}.{model_name} field '{field}' must be of type str, got {info.annotation}"
        for field, info in model.model_fields.items()
        if info.annotation is not str
    ]


def registration_entry(node: type[BaseNode], namespace: str) -> dict[str, Any]:
    """The node's entry in the `PUT /nodes/` registration body."""
    return {
        "name": node.__name__,
        "namespace": namespace,
        "inputs_schema": node.Inputs.model_json_schema(),
        "outputs_schema": node.Outputs.model_json_schema(),
        "secrets": list(node.Secrets.model_fields),
    }
