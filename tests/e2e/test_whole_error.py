"""A failed state keeps its whole error: our SDK sends the exception's type, its traceback and
the log lines the node wrote during the attempt (secret values redacted); the server keeps them
on the state and its view shows them. An official SDK's report (the message only) still works."""

from __future__ import annotations

import logging
import uuid

import httpx
import pytest
from pydantic import BaseModel

from exospherehost import BaseNode, GraphNodeModel, RetryPolicyModel, Runtime, StateManager
from tests.e2e.conftest import wait_run
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.e2e

SECRET = "tok-9f8e7d6c5b4a"
node_log = logging.getLogger("tests.whole_error")


class Charge(BaseNode):
    class Inputs(BaseModel):
        amount: str

    class Outputs(BaseModel):
        receipt: str

    class Secrets(BaseModel):
        api_token: str

    async def execute(self) -> Outputs:
        node_log.warning("charging %s with token %s", self.inputs.amount, self.secrets.api_token)
        raise ValueError(f"card declined for {self.inputs.amount}")


async def test_a_failed_state_shows_its_type_traceback_and_log_lines(sdk_env: LiveServer) -> None:
    ns = f"whole-{uuid.uuid4().hex[:8]}"
    node = GraphNodeModel(node_name="Charge", namespace=ns, identifier="charge", inputs={"amount": "12 EUR"})
    async with Runtime(ns, "whole", [Charge]), StateManager(ns) as client:
        await client.upsert_graph(
            "pay", [node], secrets={"api_token": SECRET}, retry_policy=RetryPolicyModel(max_retries=0)
        )
        run = await client.trigger("pay")
        [state] = await wait_run(client, run["run_id"])

    async with httpx.AsyncClient(base_url=sdk_env.base_url, headers={"x-api-key": sdk_env.api_key}) as http:
        view = (await http.get(f"/v0/namespace/{ns}/state/{state['id']}/view")).json()

    details = view["error_details"]
    assert view["error"] == "card declined for 12 EUR"
    assert details["type"] == "builtins.ValueError"
    assert "Traceback (most recent call last)" in details["traceback"]
    assert (
        "test_whole_error.py" in details["traceback"] and "ValueError: card declined" in details["traceback"]
    )
    [line] = [line for line in details["logs"] if "charging" in line]
    assert "charging 12 EUR with token [secret]" in line
    assert SECRET not in str(view)
