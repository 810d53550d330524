"""The run store, and automatic retries under the graph's retry policy.

    quote ──► charge      (`charge` fails on its first attempt, then succeeds on the retry)

Run it (with EXOSPHERE_STATE_MANAGER_URI and EXOSPHERE_API_KEY set):

    python -m examples.graphs.store_and_retry
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from exospherehost import (
    BadRequestError,
    BaseNode,
    GraphNodeModel,
    RetryPolicyModel,
    RetryStrategyEnum,
    Runtime,
    StateManager,
    StoreConfigModel,
)

from ._common import of, unique_namespace, wait_for_run

ATTEMPTS: dict[str, int] = {}


class Quote(BaseNode):
    class Inputs(BaseModel):
        customer: str
        amount: str
        currency: str

    class Outputs(BaseModel):
        line: str

    async def execute(self) -> Outputs:
        return self.Outputs(line=f"{self.inputs.amount} {self.inputs.currency} for {self.inputs.customer}")


class Charge(BaseNode):
    """Stands in for a flaky payment API: the first attempt for a line fails."""

    class Inputs(BaseModel):
        line: str
        currency: str

    class Outputs(BaseModel):
        receipt: str

    async def execute(self) -> Outputs:
        ATTEMPTS[self.inputs.line] = ATTEMPTS.get(self.inputs.line, 0) + 1
        if ATTEMPTS[self.inputs.line] == 1:
            raise ConnectionError("payment gateway timed out")
        return self.Outputs(receipt=f"charged {self.inputs.line} ({self.inputs.currency} account)")


def billing_graph(ns: str) -> list[GraphNodeModel]:
    return [
        GraphNodeModel(
            node_name="Quote",
            namespace=ns,
            identifier="quote",
            inputs={"customer": "${{ store.customer }}", "amount": "10", "currency": "${{ store.currency }}"},
            next_nodes=["charge"],
        ),
        GraphNodeModel(
            node_name="Charge",
            namespace=ns,
            identifier="charge",
            # Any node may read the store, not only the root.
            inputs={"line": "${{ quote.outputs.line }}", "currency": "${{ store.currency }}"},
        ),
    ]


STORE_CONFIG = StoreConfigModel(required_keys=["customer"], default_values={"currency": "EUR"})
RETRY_POLICY = RetryPolicyModel(max_retries=2, strategy=RetryStrategyEnum.FIXED, backoff_factor=100)


async def main(customer: str = "ada") -> dict[str, Any]:
    """Bill one customer; return the attempts of `charge` and what a trigger without the store gets."""
    ns = unique_namespace("billing")
    async with Runtime(ns, "billing-runtime", [Quote, Charge]), StateManager(ns) as client:
        await client.upsert_graph(
            "billing", billing_graph(ns), secrets={}, retry_policy=RETRY_POLICY, store_config=STORE_CONFIG
        )
        run = await client.trigger("billing", inputs={"amount": "25"}, store={"customer": customer})
        states = await wait_for_run(client, run["run_id"])
        try:
            await client.trigger("billing")  # no `customer` in the store
            missing: str | None = None
        except BadRequestError as exc:
            missing = f"{exc.status_code}: {exc.detail}"
    charges = of(states, "charge")
    return {
        "quote_inputs": of(states, "quote")[0]["inputs"],
        "charge_attempts": [(s["status"], s["retry_count"], s["error"]) for s in charges],
        "receipt": charges[-1]["outputs"].get("receipt"),
        "missing_store_key": missing,
    }


if __name__ == "__main__":
    print(asyncio.run(main()))
