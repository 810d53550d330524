"""A MongoDB wire-protocol server on SQLite (the `nx-27017` package) on a loopback port.

It outlives the state manager, so tests can kill and restart the server, or run two replicas,
against one database; benchmarks can measure the real Motor code path. It is not MongoDB (e.g.
it ignores `partialFilterExpression`, which we do not use).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.live_server import free_port


@contextlib.contextmanager
def durable_store() -> Iterator[str]:
    """Start nx-27017 in a temporary folder; yield its `mongodb://` URI; stop it on exit."""
    with tempfile.TemporaryDirectory(prefix="exosphere-nx-") as folder:
        port = free_port()
        command = [
            str(Path(sys.executable).parent / "nx-27017"),
            *("--db", str(Path(folder) / "store.db"), "--port", str(port)),
            *("--log-file", str(Path(folder) / "nx.log"), "--pid-file", str(Path(folder) / "nx.pid")),
        ]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for_port(port)
            yield f"mongodb://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(timeout=10)


def _wait_for_port(port: int, limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nx-27017 did not listen on {port}")
