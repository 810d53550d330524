"""What a worker process prints: `examples/sdk/worker.py` (which configures no logging) in a real
subprocess, against a real server. Its stderr has one line when it is connected and one line per
finished state; SIGTERM then stops it cleanly."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from exospherehost import StateManager
from tests.e2e.conftest import wait_run
from tests.support.live_server import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")]

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "examples" / "sdk" / "worker.py"
HANG_GUARD = 30.0
"""Seconds after which a wait is taken for a hang: a guard, not a claim about speed."""


class Worker:
    """The example worker in a child process; its stderr lines are collected as they come."""

    def __init__(self, namespace: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), namespace],
            cwd=ROOT,
            env=os.environ.copy(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stderr is not None
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=_pump, args=(self.process.stderr, self.lines), daemon=True)
        self._reader.start()

    def wait_for_line(self, text: str) -> str:
        while True:
            line = self.lines.get(timeout=HANG_GUARD)
            self.seen.append(line)
            if text in line:
                return line

    def stop(self) -> tuple[int, list[str]]:
        """SIGTERM; the exit status and every stderr line."""
        self.process.send_signal(signal.SIGTERM)
        status = self.process.wait(timeout=HANG_GUARD)
        self._reader.join(timeout=HANG_GUARD)
        while not self.lines.empty():
            self.seen.append(self.lines.get_nowait())
        return status, self.seen

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join(timeout=HANG_GUARD)
        if self.process.stderr is not None:
            self.process.stderr.close()


def _pump(source: IO[str], sink: queue.Queue[str]) -> None:
    for line in source:
        sink.put(line.rstrip("\n"))


@pytest.fixture
def namespace() -> str:
    return f"output-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def worker(namespace: str, sdk_env: LiveServer) -> Iterator[Worker]:
    started = Worker(namespace)
    try:
        yield started
    finally:
        started.close()


async def test_a_worker_prints_when_it_is_connected_and_each_finished_state(
    sdk_env: LiveServer, namespace: str, worker: Worker
) -> None:
    connected = await asyncio.to_thread(worker.wait_for_line, "connected to the state manager")
    node = {"node_name": "CountWords", "namespace": namespace, "identifier": "count", "inputs": {"text": ""}}
    async with StateManager(namespace) as client:
        await client.upsert_graph("count", [node], {}, retry_policy={"max_retries": 0})
        counted = await client.trigger("count", inputs={"text": "one two three"})
        empty = await client.trigger("count", inputs={"text": ""})
        [counted_state] = await wait_run(client, counted["run_id"], timeout=HANG_GUARD)
        [empty_state] = await wait_run(client, empty["run_id"], timeout=HANG_GUARD)
    status, lines = await asyncio.to_thread(worker.stop)

    assert status == 0, lines
    assert f"at {sdk_env.base_url}:" in connected and f"namespace {namespace}" in connected
    assert "nodes CountWords" in connected and "4 workers" in connected
    assert sum("connected to the state manager" in line for line in lines) == 1
    [executed] = [line for line in lines if f"state {counted_state['id']} (node CountWords)" in line]
    assert " INFO " in executed and "executed in " in executed
    [errored] = [line for line in lines if f"state {empty_state['id']} (node CountWords)" in line]
    assert " WARNING " in errored and "errored in " in errored and "there are no words to count" in errored
    assert (counted_state["status"], counted_state["outputs"]) == ("SUCCESS", {"words": "3"})
    assert empty_state["status"] == "ERRORED"
