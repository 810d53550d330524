"""The official SDK 0.0.3, unchanged, runs a graph with a worker key (issue 19): it registers,
claims and reports, and the same key may start nothing and read nothing."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import httpx
import pytest

from tests.compat.conftest import SCENARIOS_DIR, _scenario_env, sdk_venv_python
from tests.support.api import StateManagerAPI
from tests.support.live_server import LiveServer
from tests.support.scenario_process import scenario_process

pytestmark = [pytest.mark.compat, pytest.mark.timeout(240)]


def test_an_official_runtime_works_with_a_worker_key_that_may_do_nothing_else(
    compat_server: LiveServer,
) -> None:
    namespace = f"worker-{uuid.uuid4().hex[:8]}"
    api = StateManagerAPI(compat_server.base_url, compat_server.api_key)
    worker = api.send(
        "POST", "/v0/keys", {"name": "official-runtime", "role": "worker", "namespaces": [namespace]}, 201
    )["key"]
    workdir = Path(tempfile.mkdtemp(prefix="exosphere-worker-"))
    extra = {
        "COMPAT_FLOW_NAMESPACE": namespace,
        "EXOSPHERE_API_KEY": worker,
        "COMPAT_READ_KEY": compat_server.api_key,
    }
    env = _scenario_env(compat_server, "0.0.3", workdir, extra)
    command = [str(sdk_venv_python("0.0.3")), str(SCENARIOS_DIR / "flow_control_0_0_3.py")]
    try:
        with scenario_process(command, env=env, workdir=workdir):
            node = {
                "node_name": "Hold",
                "namespace": namespace,
                "identifier": "hold",
                "inputs": {"key": "k", "tag": "${{ store.tag }}"},
            }
            body = {"secrets": {}, "nodes": [node], "store_config": {"required_keys": ["tag"]}}
            api.send("PUT", f"/v0/namespace/{namespace}/graph/g", body, expected_status=201)
            trigger = f"/v0/namespace/{namespace}/graph/g/trigger"
            run_id = api.send("POST", trigger, {"store": {"tag": "one"}})["run_id"]
            [state] = api.wait_run(namespace, run_id, min_states=1, timeout=60)
            assert state["status"] == "SUCCESS" and state["outputs"] == {"tag": "one"}

            with httpx.Client(base_url=compat_server.base_url, headers={"x-api-key": worker}) as as_worker:
                refused = as_worker.post(trigger, json={"store": {"tag": "two"}})
                assert refused.status_code == 403 and "role worker" in refused.json()["detail"]
                assert as_worker.get(f"/v0/namespace/{namespace}/run/{run_id}").status_code == 403
                assert as_worker.get("/v0/namespace/elsewhere/nodes/").status_code == 403
    finally:
        api.close()
