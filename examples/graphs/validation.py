"""Validation: structural mistakes are refused at upsert; unknown nodes make the graph INVALID
until a runtime registers them.

Run it (with EXOSPHERE_STATE_MANAGER_URI and EXOSPHERE_API_KEY set):

    python -m examples.graphs.validation
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from exospherehost import (
    BadRequestError,
    BaseNode,
    GraphNodeModel,
    GraphValidationError,
    Runtime,
    StateManager,
)

from ._common import unique_namespace


class Resize(BaseNode):
    class Inputs(BaseModel):
        image: str

    class Outputs(BaseModel):
        image: str

    async def execute(self) -> Outputs:
        return self.Outputs(image=f"{self.inputs.image}@800px")


def node(ns: str, identifier: str, inputs: dict[str, Any], *next_nodes: str) -> GraphNodeModel:
    return GraphNodeModel(
        node_name="Resize", namespace=ns, identifier=identifier, inputs=inputs, next_nodes=list(next_nodes)
    )


async def main() -> dict[str, Any]:
    ns = unique_namespace("images")
    result: dict[str, Any] = {}
    async with StateManager(ns) as client:
        # 1. A diamond (`merge` has two parents): refused with 400, nothing is stored.
        diamond = [
            node(ns, "src", {"image": "a.png"}, "left", "right"),
            node(ns, "left", {"image": "${{ src.outputs.image }}"}, "merge"),
            node(ns, "right", {"image": "${{ src.outputs.image }}"}, "merge"),
            node(ns, "merge", {"image": "${{ left.outputs.image }}"}),
        ]
        try:
            await client.upsert_graph("diamond", diamond, secrets={})
        except BadRequestError as exc:
            result["diamond"] = (exc.status_code, exc.detail)

        # 2. A placeholder that names a node which is not an ancestor: also a 400.
        sideways = [
            node(ns, "src", {"image": "a.png"}, "left", "right"),
            node(ns, "left", {"image": "${{ src.outputs.image }}"}),
            node(ns, "right", {"image": "${{ left.outputs.image }}"}),
        ]
        try:
            await client.upsert_graph("sideways", sideways, secrets={})
        except BadRequestError as exc:
            result["not_an_ancestor"] = (exc.status_code, exc.detail)

        # 3. Structurally fine, but no runtime has registered `Resize` yet: stored as INVALID.
        thumbnails = [node(ns, "resize", {"image": "cat.png"})]
        try:
            await client.upsert_graph("thumbnails", thumbnails, secrets={})
        except GraphValidationError as exc:
            result["before_registration"] = (exc.validation_status, exc.validation_errors)
        try:
            await client.trigger("thumbnails")
        except BadRequestError as exc:
            result["trigger_invalid"] = exc.status_code

        # 4. A runtime registers `Resize`: the server re-validates the graphs that use it.
        async with Runtime(ns, "images-runtime", [Resize]):
            result["after_registration"] = (await client.get_graph("thumbnails"))["validation_status"]
    return result


if __name__ == "__main__":
    print(asyncio.run(main()))
