"""Scoped keys end to end (issue 19): two server replicas on one database (nx-27017), a runtime of
our SDK with a worker key, an operator, a viewer, a revoke seen by both replicas within 5 s, and
the audit log of who did what."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from exospherehost import BaseNode, PermissionDeniedError, Runtime, StateManager
from tests.support.durable_store import durable_store
from tests.support.live_server import LiveServer, start_server

pytestmark = pytest.mark.e2e


class Greet(BaseNode):
    """Uses the graph's secret, which only a worker holding the state reads."""

    class Inputs(BaseModel):
        name: str

    class Outputs(BaseModel):
        text: str

    class Secrets(BaseModel):
        salutation: str

    async def execute(self) -> Outputs:
        return self.Outputs(text=f"{self.secrets.salutation}, {self.inputs.name}")


@pytest.fixture(scope="module")
def replicas() -> Iterator[tuple[LiveServer, LiveServer]]:
    with durable_store() as uri:
        env = {
            "MONGO_URI": uri,
            "MONGO_DATABASE_NAME": f"keys{uuid.uuid4().hex[:8]}",
            "RECOVERY_INTERVAL_SECONDS": 0.2,
        }
        one = start_server(**env)
        try:
            two = start_server(api_key=one.api_key, encryption_key=one.encryption_key, **env)
            try:
                yield one, two
            finally:
                two.stop()
        finally:
            one.stop()


async def _key(server: LiveServer, name: str, role: str, namespaces: list[str]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.base_url, headers=server.headers) as http:
        answer = await http.post("/v0/keys", json={"name": name, "role": role, "namespaces": namespaces})
        assert answer.status_code == 201, answer.text
        made: dict[str, Any] = answer.json()
        return made


async def test_a_worker_key_runs_a_graph_and_may_do_nothing_else(
    replicas: tuple[LiveServer, LiveServer],
) -> None:
    one, two = replicas
    ns = f"keys-{uuid.uuid4().hex[:8]}"
    worker = (await _key(one, "runtime", "worker", [ns]))["key"]
    operator = (await _key(one, "on-call", "operator", [ns]))["key"]
    viewer = (await _key(one, "support", "viewer", [ns]))["key"]
    graph = [{"node_name": "Greet", "namespace": ns, "identifier": "greet", "inputs": {"name": "Ada"}}]

    async with (
        Runtime(ns, "rt", [Greet], one.base_url, worker),
        StateManager(ns, state_manager_uri=one.base_url, key=one.api_key) as root,
        StateManager(ns, state_manager_uri=two.base_url, key=operator) as on_call,
        StateManager(ns, state_manager_uri=two.base_url, key=viewer) as support,
        StateManager(ns, state_manager_uri=one.base_url, key=worker) as runtime_key,
    ):
        await root.upsert_graph("greet", graph, secrets={"salutation": "Hello"})
        run = await on_call.trigger("greet")
        states = await _done(support, run["run_id"])
        assert [s["outputs"] for s in states] == [{"text": "Hello, Ada"}]  # the worker read the secret

        with pytest.raises(PermissionDeniedError, match="role worker, which may not trigger"):
            await runtime_key.trigger("greet")
        with pytest.raises(PermissionDeniedError, match="role worker"):
            await runtime_key.get_run(run["run_id"])
        async with httpx.AsyncClient(base_url=one.base_url, headers={"x-api-key": worker}) as http:
            done = states[0]["id"]  # a state it no longer holds: its secrets are not given
            secrets = await http.get(f"/v0/namespace/{ns}/state/{done}/secrets")
            assert secrets.status_code == 409 and "Hello" not in secrets.text
            elsewhere = await http.post("/v0/namespace/other/states/enqueue", json={"nodes": ["Greet"]})
            assert elsewhere.status_code == 403
        with pytest.raises(PermissionDeniedError, match="role viewer, which may not cancel"):
            await support.cancel_run(run["run_id"])

        records = (await root.read_audit(namespace=ns))["records"]
    actions = [(r["action"], r["key_name"], r["status"]) for r in records]
    assert ("run.trigger", "on-call", 200) in actions
    assert ("run.trigger", "runtime", 403) in actions
    assert ("run.cancel", "support", 403) in actions
    assert ("graph.upsert", "root", 201) in actions
    assert not [a for a in actions if a[0].startswith("state")]  # the runtime's work is not recorded


async def test_a_revoked_key_is_refused_by_both_replicas_within_five_seconds(
    replicas: tuple[LiveServer, LiveServer],
) -> None:
    one, two = replicas
    made = await _key(one, "soon-gone", "viewer", ["*"])
    headers = {"x-api-key": made["key"]}
    async with (
        httpx.AsyncClient(base_url=one.base_url, headers=headers) as on_one,
        httpx.AsyncClient(base_url=two.base_url, headers=headers) as on_two,
    ):
        for http in (on_one, on_two):  # both have read (and cached) the key
            assert (await http.get("/v0/namespaces")).status_code == 200
        async with httpx.AsyncClient(base_url=two.base_url, headers=two.headers) as admin:
            assert (await admin.delete(f"/v0/keys/{made['id']}")).status_code == 200
        revoked_at = time.monotonic()
        # The replica that revoked it refuses it at once: the very next request.
        assert (await on_two.get("/v0/namespaces")).status_code == 401
        refused_after = {}
        while len(refused_after) < 2 and time.monotonic() - revoked_at < 10:
            for name, http in (("one", on_one), ("two", on_two)):
                if name not in refused_after and (await http.get("/v0/namespaces")).status_code == 401:
                    refused_after[name] = time.monotonic() - revoked_at
            await asyncio.sleep(0.05)
    assert set(refused_after) == {"one", "two"} and max(refused_after.values()) < 5, refused_after


async def _done(client: StateManager, run_id: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        run = await client.get_run(run_id)
        if run["status"] not in ("PENDING", "RUNNING"):
            assert run["status"] == "SUCCESS", run
            return list((await client.list_states(run_id))["states"])
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} did not end")
