"""Ctrl-C on a worker process: `Runtime.start()` in a real process, against a loopback server.

One SIGINT drains (one warning, the running node finishes and is reported executed); a second
one cancels the running node and reports it errored. Either way the process exits with status
0 and prints no traceback.
"""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

SCRIPT = Path(__file__).with_name("ctrl_c_runtime.py")
PREFIX = "/v0/namespace/ns/"
HANG_GUARD = 20.0
"""Seconds after which a wait is taken for a hang: a guard, not a claim about speed."""

DRAIN_LINE = "Stopping: draining 1 running node (up to 30 s); press Ctrl-C again to stop now"

LOG_LINE = re.compile(r"^\S+ \S+ [A-Z]+ exospherehost[\w.]*: (?P<message>.*)$")
"""A line of the runtime's default stderr output: date, time, level, logger, message."""


def stopping_messages(err: list[str]) -> list[str]:
    """The messages of the runtime's `Stopping...` log lines on stderr."""
    messages = [match["message"] for line in err if (match := LOG_LINE.match(line))]
    return [message for message in messages if message.startswith("Stopping")]


class LoopbackServer(ThreadingHTTPServer):
    """The state manager, as far as one runtime needs it: hands out one state, records reports."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.reports: list[tuple[str, Any]] = []
        self.polls = 0
        self.work = True
        """Whether the first poll hands out the one state."""
        self._lock = threading.Lock()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def answer(self, route: str, body: Any) -> dict[str, Any]:
        with self._lock:
            if route == "states/enqueue":
                self.polls += 1
                states = [{"state_id": "s1", "node_name": "Slow", "inputs": {}}] if self.work else []
                self.work = False
                return {"states": states}
            if route.startswith("state/"):
                self.reports.append((route, body))
            return {}


class _Handler(BaseHTTPRequestHandler):
    server: LoopbackServer

    def do_PUT(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        data = json.dumps(self.server.answer(self.path.removeprefix(PREFIX), body)).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Worker:
    """`ctrl_c_runtime.py` in a child process; its output lines are collected as they come."""

    def __init__(self, uri: str, node_seconds: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(SCRIPT), uri, str(node_seconds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self.stdout: queue.Queue[str] = queue.Queue()
        self.stderr: queue.Queue[str] = queue.Queue()
        self.err_lines: list[str] = []
        self._readers = [
            threading.Thread(target=_pump, args=(self.process.stdout, self.stdout), daemon=True),
            threading.Thread(target=_pump, args=(self.process.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def wait_for_line(self, stream: queue.Queue[str], text: str) -> None:
        while True:
            line = stream.get(timeout=HANG_GUARD)
            if stream is self.stderr:
                self.err_lines.append(line)
            if text in line:
                return

    def finish(self) -> tuple[int, list[str], list[str]]:
        """Wait for the exit; return the status and every stdout and stderr line."""
        status = self.process.wait(timeout=HANG_GUARD)
        for reader in self._readers:
            reader.join(timeout=HANG_GUARD)
        out = _drain(self.stdout)
        return status, out, self.err_lines + _drain(self.stderr)

    def close(self) -> None:
        """Kill the process if it still runs; close its pipes."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for reader in self._readers:
            reader.join(timeout=HANG_GUARD)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def _pump(source: IO[str], sink: queue.Queue[str]) -> None:
    for line in source:
        sink.put(line.rstrip("\n"))


def _drain(stream: queue.Queue[str]) -> list[str]:
    lines: list[str] = []
    while not stream.empty():
        lines.append(stream.get_nowait())
    return lines


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    server = LoopbackServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=HANG_GUARD)


@pytest.fixture
def start_worker() -> Iterator[type[Worker]]:
    started: list[Worker] = []

    class Tracked(Worker):
        def __init__(self, uri: str, node_seconds: float) -> None:
            super().__init__(uri, node_seconds)
            started.append(self)

    yield Tracked
    for worker in started:
        worker.close()


def test_one_ctrl_c_lets_the_running_node_finish_then_exits_cleanly(
    server: LoopbackServer, start_worker: type[Worker]
) -> None:
    worker = start_worker(server.uri, 2.0)
    worker.wait_for_line(worker.stdout, "started")

    worker.process.send_signal(signal.SIGINT)
    status, out, err = worker.finish()

    assert status == 0, err
    assert stopping_messages(err) == [DRAIN_LINE]
    assert not any("Traceback" in line for line in err), err
    assert server.reports == [("state/s1/executed", {"outputs": [{"slept": "2.0"}]})]
    assert out[-1] == "exited"


def test_a_second_ctrl_c_cancels_the_running_node_and_reports_it_errored(
    server: LoopbackServer, start_worker: type[Worker]
) -> None:
    worker = start_worker(server.uri, 3600)
    worker.wait_for_line(worker.stdout, "started")

    worker.process.send_signal(signal.SIGINT)
    worker.wait_for_line(worker.stderr, "Stopping: draining")
    worker.process.send_signal(signal.SIGINT)
    status, out, err = worker.finish()

    assert status == 0, err
    assert not any("Traceback" in line for line in err), err
    [(route, body)] = server.reports
    assert route == "state/s1/errored"
    assert body["error"].startswith("Cancelled: runtime ctrl-c shut down")
    assert out[-1] == "exited"


def test_ctrl_c_while_idle_exits_cleanly(server: LoopbackServer, start_worker: type[Worker]) -> None:
    server.work = False
    worker = start_worker(server.uri, 0)
    wait_for(lambda: server.polls > 0)  # registered and serving (the handlers are installed)

    worker.process.send_signal(signal.SIGINT)
    status, out, err = worker.finish()

    assert status == 0, err
    assert not any("Traceback" in line for line in err), err
    assert stopping_messages(err) == ["Stopping: no running nodes"]
    assert out == ["exited"]
    assert server.reports == []
