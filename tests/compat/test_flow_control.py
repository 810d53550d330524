"""Flow control with the official SDK 0.0.3, unchanged: a concurrency limit per key and a run
priority are applied by our server when it hands out work (issue 18)."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.compat.conftest import SCENARIOS_DIR, _scenario_env, sdk_venv_python
from tests.support.api import StateManagerAPI
from tests.support.live_server import LiveServer
from tests.support.scenario_process import scenario_process

pytestmark = [pytest.mark.compat, pytest.mark.timeout(240)]


def _peaks(starts: list[dict[str, Any]], ends: list[dict[str, Any]]) -> dict[str, int]:
    """The most executions of each key that ran at once, from their start and end events."""
    moments = sorted([(e["at"], 1, e["key"]) for e in starts] + [(e["at"], -1, e["key"]) for e in ends])
    running: dict[str, int] = {}
    peak: dict[str, int] = {}
    for _, step, key in moments:
        running[key] = running.get(key, 0) + step
        peak[key] = max(peak.get(key, 0), running[key])
    return peak


def test_an_official_runtime_is_kept_to_a_limit_per_key_and_takes_urgent_runs_first(
    compat_server: LiveServer,
) -> None:
    namespace = f"flow-{uuid.uuid4().hex[:8]}"
    workdir = Path(tempfile.mkdtemp(prefix="exosphere-flow-"))
    api = StateManagerAPI(compat_server.base_url, compat_server.api_key)
    env = _scenario_env(compat_server, "0.0.3", workdir, {"COMPAT_FLOW_NAMESPACE": namespace})
    command = [str(sdk_venv_python("0.0.3")), str(SCENARIOS_DIR / "flow_control_0_0_3.py")]
    try:
        with scenario_process(command, env=env, workdir=workdir) as runtime:
            node = {
                "node_name": "Hold",
                "namespace": namespace,
                "identifier": "hold",
                "inputs": {"key": "${{ store.key }}", "tag": "${{ store.tag }}"},
                "concurrency": {"limit": 2, "key": "${{ store.key }}"},
            }
            body = {"secrets": {}, "nodes": [node], "store_config": {"required_keys": ["key", "tag"]}}
            stored = api.send("PUT", f"/v0/namespace/{namespace}/graph/g", body, expected_status=201)
            assert stored["validation_status"] == "VALID"
            trigger = f"/v0/namespace/{namespace}/graph/g/trigger"
            runs = [
                api.send("POST", trigger, {"store": {"key": key, "tag": f"{key}-{i}"}})["run_id"]
                for i in range(5)
                for key in ("acme", "zeta")
            ]
            runs.append(
                api.send("POST", trigger, {"store": {"key": "acme", "tag": "urgent"}, "priority": 600})[
                    "run_id"
                ]
            )
            for run_id in runs:
                api.wait_run(namespace, run_id, min_states=1, timeout=60)
            starts, ends = runtime.events("start"), runtime.events("end")
    finally:
        api.close()

    assert _peaks(starts, ends) == {"acme": 2, "zeta": 2}  # the limit held, and both slots were used
    acme = [e["tag"] for e in sorted(starts, key=lambda e: e["at"]) if e["key"] == "acme"]
    assert acme.index("urgent") <= 2  # triggered last, started with the first ones
