"""Tuned leases with the official SDK 0.0.3, which never heartbeats: a runtime killed while it
holds claims of a fast node is noticed after the node's tuned lease, not after
STATE_LEASE_SECONDS (300 s), and another official runtime finishes the work.

The floor of tuned leases is lowered here (TUNED_LEASE_FLOOR_SECONDS) to keep the test short;
benchmarks/RESULTS.md has the figure with the default floor.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.compat.conftest import SCENARIOS_DIR, _scenario_env, sdk_venv_python
from tests.support.api import StateManagerAPI, summarize_states
from tests.support.live_server import LiveServer, start_server
from tests.support.scenario_process import ScenarioProcess, scenario_process

pytestmark = [pytest.mark.compat, pytest.mark.timeout(240)]

FLOOR_SECONDS = 3
HELD = 10
WARM_UP = 20


@pytest.fixture(scope="module")
def server() -> Iterator[LiveServer]:
    live = start_server(
        TUNED_LEASE_FLOOR_SECONDS=FLOOR_SECONDS, RECOVERY_INTERVAL_SECONDS=0.2, STATE_LEASE_SECONDS=300
    )
    try:
        yield live
    finally:
        live.stop()


def _runtime(
    server: LiveServer, namespace: str, hang: bool
) -> contextlib.AbstractContextManager[ScenarioProcess]:
    workdir = Path(tempfile.mkdtemp(prefix="exosphere-tuned-"))
    extra = {"COMPAT_TUNED_NAMESPACE": namespace, "COMPAT_HANG": "1" if hang else "0"}
    return scenario_process(
        [str(sdk_venv_python("0.0.3")), str(SCENARIOS_DIR / "tuned_lease_0_0_3.py")],
        env=_scenario_env(server, "0.0.3", workdir, extra),
        workdir=workdir,
    )


def _wait(check: Callable[[], bool], what: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_killed_official_runtime_s_claims_are_redelivered_after_the_tuned_lease(server: LiveServer) -> None:
    namespace = f"tuned-{uuid.uuid4().hex[:8]}"
    api = StateManagerAPI(server.base_url, server.api_key)
    trigger = f"/v0/namespace/{namespace}/graph/quick/trigger"
    try:
        with _runtime(server, namespace, hang=True) as first:
            warm = [
                api.send("POST", trigger, {"inputs": {"mode": "fast", "tag": f"w{i}"}})["run_id"]
                for i in range(WARM_UP)
            ]
            for run_id in warm:
                api.wait_run(namespace, run_id, min_states=1, timeout=60)
            held = [
                api.send("POST", trigger, {"inputs": {"mode": "hang", "tag": f"h{i}"}})["run_id"]
                for i in range(HELD)
            ]
            _wait(lambda: len(first.events("hanging")) == HELD, "the runtime never held every claim", 30)

            first.process.kill()  # SIGKILL: it reports nothing
            killed_at = time.monotonic()
            first.process.wait(timeout=10)

        with _runtime(server, namespace, hang=False):
            for run_id in held:
                api.wait_run(namespace, run_id, min_states=2, timeout=120)
            recovered_after = time.monotonic() - killed_at

        for run_id in held:
            states = api.run_states(namespace, run_id)
            outcome = sorted((s["status"], s["retry_count"]) for s in states)
            assert outcome == [("RETRY_CREATED", 0), ("SUCCESS", 1)], summarize_states(states)
            error = next(s["error"] for s in states if s["status"] == "RETRY_CREATED")
            # The claims held a tuned lease (at least the floor), not the fixed 300 s one.
            lease = float(re.search(r"within ([0-9.]+)s", error).group(1))  # type: ignore[union-attr]
            assert FLOOR_SECONDS <= lease < 300, error
        print(f"\n{HELD} claims of a killed official runtime finished {recovered_after:.1f}s after the kill")
    finally:
        api.close()
