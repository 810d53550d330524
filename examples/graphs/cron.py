"""Cron triggers: the server starts a run of the graph on a schedule (in UTC).

Run it (with EXOSPHERE_STATE_MANAGER_URI and EXOSPHERE_API_KEY set):

    python -m examples.graphs.cron
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from exospherehost import BadRequestError, BaseNode, CronTrigger, GraphNodeModel, Runtime, StateManager

from ._common import unique_namespace


class Digest(BaseNode):
    class Inputs(BaseModel):
        period: str

    class Outputs(BaseModel):
        digest: str

    async def execute(self) -> Outputs:
        return self.Outputs(digest=f"digest of the last {self.inputs.period}")


async def main() -> dict[str, Any]:
    """Schedule a graph on weekday mornings; return the stored triggers and a refused expression."""
    ns = unique_namespace("digest")
    graph = [GraphNodeModel(node_name="Digest", namespace=ns, identifier="digest", inputs={"period": "day"})]
    async with Runtime(ns, "digest-runtime", [Digest]), StateManager(ns) as client:
        await client.upsert_graph(
            "morning-digest",
            graph,
            secrets={},
            triggers=[CronTrigger(expression="0 9 * * 1-5")],  # 09:00 UTC, Monday to Friday
        )
        stored = await client.get_graph("morning-digest")
        try:
            await client.upsert_graph(
                "broken", graph, secrets={}, triggers=[CronTrigger(expression="every day")]
            )
            refused: int | None = None
        except BadRequestError as exc:
            refused = exc.status_code
    return {"triggers": stored["triggers"], "invalid_expression": refused}


if __name__ == "__main__":
    print(asyncio.run(main()))
