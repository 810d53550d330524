"""`BaseNode`: the unit of work a runtime executes, and the rules a node class must follow."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

__all__ = ["BaseNode"]


class BaseNode(ABC):
    """Base class of every node.

    A node declares three pydantic models, all of whose fields are `str`:

    - `Inputs`: the values the graph passes in (validated before `execute` runs);
    - `Outputs`: what `execute` returns (one instance, a list of them to fan out, or None);
    - `Secrets`: the graph secrets the node needs (fetched only if it declares any).

    The runtime creates a new instance per state, sets `self.inputs` and `self.secrets`, and
    awaits `execute()`. Raise `PruneSignal` or `ReQueueAfterSignal` to steer the run; any other
    exception reports the state as errored. The node's name is its class name.

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
    async def execute(self) -> BaseModel | Sequence[BaseModel] | None:
        """Do the work, reading `self.inputs` and `self.secrets`.

        Returns:
            An `Outputs` instance, a list of them (one next branch per element), or None
            (the same as an empty list: the state succeeds with no outputs and its next nodes
            still run once, as upstream; raise `PruneSignal` to end the branch instead).
        """

    async def _execute(self, inputs: BaseModel, secrets: BaseModel) -> BaseModel | Sequence[BaseModel] | None:
        """Set `self.inputs` and `self.secrets`, then await `execute()`."""
        self.inputs = inputs
        self.secrets = secrets
        return await self.execute()


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
    if inspect.isabstract(node):
        errors.append(f"{name} does not implement execute()")
    elif not inspect.iscoroutinefunction(node.execute):
        errors.append(f"{name}.execute must be declared with 'async def'")
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
