"""`python -m state_manager --dev` as a new user runs it (`make run`): the embedded store, keys
generated and printed, nothing of the developer's shell. For tests of the embedded store and of
what happens when it or the server dies."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.live_server import LiveServer, free_port

KEY_LINE = re.compile(r"^Development API key \(x-api-key\): (\S+)$", re.MULTILINE)
# Nothing of the developer's shell: no MongoDB, no keys, no data directory, no mode.
SCRUBBED = ("MONGO_URI", "MONGO_DATABASE_NAME", "STATE_MANAGER_SECRET", "SECRETS_ENCRYPTION_KEY", "MODE")


def dev_env(**extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name.upper() not in SCRUBBED and not name.upper().startswith("EXOSPHERE_")
    }
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def dev_command(*args: str, port: int | None = None) -> list[str]:
    port = port or free_port()
    return [sys.executable, "-m", "state_manager", "--host", "127.0.0.1", "--port", str(port), "--dev", *args]


def start_dev_server(cwd: Path, *args: str, env: dict[str, str]) -> LiveServer:
    """Start the server in `cwd` (no `.env` there), wait until it is healthy and read its key."""
    port = free_port()
    log_path = cwd / f"server-{port}.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        dev_command(*args, port=port),
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    server = LiveServer(process, "127.0.0.1", port, "", "", log_path, env, log_file)
    try:
        server.wait_healthy()
        found = KEY_LINE.search(server.log_text())
        assert found, f"no API key printed:\n{server.log_text()}"
    except BaseException:
        server.stop()
        raise
    server.api_key = found.group(1)
    return server
