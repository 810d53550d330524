"""Test data builders for the state manager, and a client that plays a user and a worker.

Node registrations carry JSON schemas shaped like pydantic's `model_json_schema()` with string
properties; graph bodies are plain dicts as a user would send them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import httpx

API_KEY = "test-key"
NAMESPACE = "testns"
OTHER_NAMESPACE = "otherns"

Json = dict[str, Any]


# ---------------------------------------------------------------- builders


def schema(fields: Iterable[str], title: str = "Model") -> Json:
    """A JSON schema with one required string property per field, as pydantic writes it."""
    names = list(fields)
    return {
        "properties": {name: {"title": name.replace("_", " ").title(), "type": "string"} for name in names},
        "required": names,
        "title": title,
        "type": "object",
    }


def node(
    name: str, inputs: Iterable[str] = ("x",), outputs: Iterable[str] = ("y",), secrets: Iterable[str] = ()
) -> Json:
    """One node of a registration body."""
    return {
        "name": name,
        "inputs_schema": schema(inputs, "Inputs"),
        "outputs_schema": schema(outputs, "Outputs"),
        "secrets": list(secrets),
    }


def registration(*nodes: Json, runtime_name: str = "test-runtime") -> Json:
    return {"runtime_name": runtime_name, "nodes": list(nodes)}


def template(
    identifier: str,
    node_name: str,
    inputs: Json | None = None,
    next_nodes: list[str] | None = None,
    *,
    unites: str | None = None,
    strategy: str | None = None,
    namespace: str = NAMESPACE,
) -> Json:
    """One node of a graph template."""
    body: Json = {
        "node_name": node_name,
        "namespace": namespace,
        "identifier": identifier,
        "inputs": inputs if inputs is not None else {},
        "next_nodes": next_nodes,
    }
    if unites is not None:
        body["unites"] = {"identifier": unites, **({"strategy": strategy} if strategy else {})}
    return body


def graph(
    *templates: Json,
    secrets: dict[str, str] | None = None,
    retry_policy: Json | None = None,
    store_config: Json | None = None,
    triggers: list[Json] | None = None,
) -> Json:
    """A graph upsert body; omitted optional parts are left out (server defaults)."""
    body: Json = {"secrets": secrets or {}, "nodes": list(templates)}
    if retry_policy is not None:
        body["retry_policy"] = retry_policy
    if store_config is not None:
        body["store_config"] = store_config
    if triggers is not None:
        body["triggers"] = triggers
    return body


def fixed_retry(max_retries: int = 1, delay_ms: int = 50) -> Json:
    """A retry policy with a short, predictable delay."""
    return {"max_retries": max_retries, "strategy": "FIXED", "backoff_factor": delay_ms}


NO_RETRY: Json = {"max_retries": 0}


def cron(expression: str) -> Json:
    return {"type": "CRON", "value": {"expression": expression}}


# The two-node chain most tests use: a (Alpha) -> b (Beta), b's input is a's output.
ALPHA = node("Alpha")
BETA = node("Beta")


def chain(**graph_options: Any) -> Json:
    return graph(
        template("a", "Alpha", {"x": "start"}, ["b"]),
        template("b", "Beta", {"x": "from a: ${{ a.outputs.y }}"}),
        **graph_options,
    )


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# ---------------------------------------------------------------- a client for the tests


def _check(response: httpx.Response, expect: int) -> Any:
    assert response.status_code == expect, (
        f"{response.request.method} {response.request.url.path}: expected {expect}, "
        f"got {response.status_code}: {response.text[:2000]}"
    )
    return response.json() if response.content else None


class Api:
    """Calls under `/v0/namespace/{namespace}`, each asserting the expected status code."""

    def __init__(self, client: httpx.AsyncClient, namespace: str = NAMESPACE) -> None:
        self.client = client
        self.namespace = namespace

    def url(self, suffix: str, namespace: str | None = None) -> str:
        return f"/v0/namespace/{namespace or self.namespace}{suffix}"

    async def call(
        self, method: str, suffix: str, json: Any = None, *, expect: int = 200, namespace: str | None = None
    ) -> Any:
        response = await self.client.request(method, self.url(suffix, namespace), json=json)
        return _check(response, expect)

    # -- nodes and graphs

    async def register(self, *nodes: Json, namespace: str | None = None) -> Json:
        result: Json = await self.call("PUT", "/nodes/", registration(*nodes), namespace=namespace)
        return result

    async def upsert(self, name: str, body: Json, *, expect: int = 201, namespace: str | None = None) -> Any:
        return await self.call("PUT", f"/graph/{name}", body, expect=expect, namespace=namespace)

    async def setup(self, name: str, body: Json, *nodes: Json) -> Json:
        """Register `nodes`, upsert the graph and insist that it is VALID."""
        if nodes:
            await self.register(*nodes)
        stored: Json = await self.upsert(name, body)
        assert stored["validation_status"] == "VALID", stored["validation_errors"]
        return stored

    async def get_graph(self, name: str, *, expect: int = 200) -> Any:
        return await self.call("GET", f"/graph/{name}", expect=expect)

    # -- runs

    async def trigger(self, name: str, body: Json | None = None, *, expect: int = 200) -> Any:
        return await self.call(
            "POST", f"/graph/{name}/trigger", body if body is not None else {}, expect=expect
        )

    async def run_states(self, run_id: str) -> list[Json]:
        body = await self.call("GET", f"/states/run/{run_id}")
        states: list[Json] = body["states"]
        return states

    async def by_identifier(self, run_id: str) -> dict[str, list[Json]]:
        grouped: dict[str, list[Json]] = {}
        for state in await self.run_states(run_id):
            grouped.setdefault(state["identifier"], []).append(state)
        return grouped

    async def state(self, run_id: str, state_id: str) -> Json:
        for state in await self.run_states(run_id):
            if state["id"] == state_id:
                return state
        raise AssertionError(f"state {state_id} not in run {run_id}")

    async def run_summary(self, run_id: str) -> Json:
        body = await self.call("GET", "/runs/1/1000")
        for run in body["runs"]:
            if run["run_id"] == run_id:
                found: Json = run
                return found
        raise AssertionError(f"run {run_id} not listed: {body}")

    # -- worker calls

    async def claim(
        self, *node_names: str, batch_size: int = 100, wait_ms: int = 0, namespace: str | None = None
    ) -> list[Json]:
        body = {"nodes": list(node_names), "batch_size": batch_size, "wait_ms": wait_ms}
        result = await self.call("POST", "/states/enqueue", body, namespace=namespace)
        states: list[Json] = result["states"]
        return states

    async def executed(
        self, state_id: str, outputs: list[Json], *, expect: int = 200, path: str = "state"
    ) -> Any:
        return await self.call("POST", f"/{path}/{state_id}/executed", {"outputs": outputs}, expect=expect)

    async def errored(self, state_id: str, error: str = "boom", *, expect: int = 200) -> Any:
        return await self.call("POST", f"/state/{state_id}/errored", {"error": error}, expect=expect)


class Worker:
    """Plays a runtime serving some nodes: claims work, then reports executed or errored."""

    def __init__(self, api: Api, *node_names: str) -> None:
        self.api = api
        self.node_names = node_names

    async def claim_one(self) -> Json:
        claimed = await self.api.claim(*self.node_names, batch_size=1)
        assert len(claimed) == 1, f"expected one state of {self.node_names} to claim, got {claimed}"
        return claimed[0]

    async def execute(self, outputs: list[Json] | None = None) -> Json:
        """Claim one state and report it executed; returns the claimed state."""
        state = await self.claim_one()
        await self.api.executed(state["state_id"], outputs if outputs is not None else [{"y": "done"}])
        return state

    async def fail(self, error: str = "boom") -> tuple[Json, Json]:
        """Claim one state and report it errored; returns the claimed state and the answer."""
        state = await self.claim_one()
        answer = await self.api.errored(state["state_id"], error)
        return state, answer

    async def drain(self, outputs: list[Json] | None = None) -> list[Json]:
        """Execute every state that is due now, until none is left."""
        done = []
        while claimed := await self.api.claim(*self.node_names, batch_size=100):
            for state in claimed:
                await self.api.executed(
                    state["state_id"], outputs if outputs is not None else [{"y": "done"}]
                )
                done.append(state)
        return done
