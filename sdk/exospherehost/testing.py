"""Run a node in a unit test, with no server.

Example:
    ```python
    from exospherehost.testing import run_node

    async def test_greet():
        assert await run_node(Greet, {"name": "Ada"}) == [{"message": "hello Ada"}]
    ```
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._execution import normalise_outputs
from .node import BaseNode, validate_nodes

__all__ = ["run_node"]


async def run_node(
    node: type[BaseNode],
    inputs: Mapping[str, Any],
    secrets: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Validate the node class and its inputs/secrets, run `execute()`, and return its outputs.

    An `async def execute` is awaited; a plain `def execute` runs in a thread
    (`asyncio.to_thread`), as the runtime runs it in one of its worker threads.

    This is what the `Runtime` does with a claimed state, minus the HTTP: the same node rules,
    the same validation of `Inputs` and `Secrets`, the same normalisation of the result.

    Args:
        node: The `BaseNode` subclass to run.
        inputs: The state's inputs.
        secrets: The graph secrets the node would receive; defaults to none.

    Returns:
        The outputs as dicts (`model_dump()`), one per element the node returned; `[]` for None.

    Raises:
        ValueError: If the node class breaks the node rules.
        pydantic.ValidationError: If `inputs` or `secrets` do not fit the node's models.
        PruneSignal: If the node raised it.
        ReQueueAfterSignal: If the node raised it.
        Exception: Whatever else the node raised (the runtime would report it as errored).
    """
    errors = validate_nodes([node])
    if errors:
        raise ValueError("Following errors while validating nodes: " + "\n".join(errors))
    validated_inputs = node.Inputs.model_validate(dict(inputs))
    validated_secrets = node.Secrets.model_validate(dict(secrets or {}))
    result = await node()._execute(validated_inputs, validated_secrets)
    return [output.model_dump(mode="json") for output in normalise_outputs(node, result)]
