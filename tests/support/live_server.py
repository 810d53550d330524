"""Run OUR state manager as a real subprocess on a free loopback port.

Used by the e2e and compat suites, which need a server that real clients (our SDK, the official
SDK releases) talk to over TCP::

    with running_server(STATE_LEASE_SECONDS=2) as server:
        httpx.get(f"{server.base_url}/health")

or, in a test directory's ``conftest.py``::

    from tests.support.live_server import live_server_factory  # re-exported fixture

    def test_x(live_server_factory):
        server = live_server_factory(RECOVERY_INTERVAL_SECONDS=1)

The server runs on the embedded in-memory store (``MONGO_URI`` is removed from its environment),
with a fresh API key and a fresh secrets-encryption key. Its stdout and stderr go to a temporary
log file; ``LiveServer.log_tail()`` reads it, and a failed start raises with the log attached.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

STARTUP_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 10.0

# Variables of the parent environment that must not leak into the test server: a developer's
# shell may point at a real MongoDB or carry a different key.
_SCRUBBED_ENV = ("MONGO_URI", "MONGO_DATABASE_NAME", "STATE_MANAGER_SECRET", "SECRETS_ENCRYPTION_KEY")


class ServerStartError(RuntimeError):
    """The server process died or did not answer ``GET /health`` in time."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def new_encryption_key() -> str:
    """A valid ``SECRETS_ENCRYPTION_KEY``: URL-safe base64 of 32 random bytes."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


@dataclass
class LiveServer:
    """A running ``python -m state_manager`` process."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    api_key: str
    encryption_key: str
    log_path: Path
    env: dict[str, str] = field(repr=False)
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.api_key}

    def is_running(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 200) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self) -> None:
        """Terminate the process (SIGTERM, then SIGKILL after a grace period). Idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def wait_healthy(self, timeout: float = STARTUP_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        last_problem = "no answer yet"
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if not self.is_running():
                    raise ServerStartError(
                        f"state manager exited with code {self.process.returncode} before it was healthy;"
                        f" log {self.log_path}:\n{self.log_tail()}"
                    )
                try:
                    response = client.get(f"{self.base_url}/health")
                except httpx.TransportError as exc:
                    last_problem = repr(exc)
                else:
                    if response.status_code == 200:
                        return
                    last_problem = f"GET /health -> {response.status_code} {response.text[:200]}"
                time.sleep(0.1)
        raise ServerStartError(
            f"state manager not healthy after {timeout:.0f}s ({last_problem}); log {self.log_path}:\n"
            f"{self.log_tail()}"
        )


def _server_env(api_key: str, encryption_key: str, overrides: dict[str, object]) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in _SCRUBBED_ENV}
    env.update(
        STATE_MANAGER_SECRET=api_key,
        SECRETS_ENCRYPTION_KEY=encryption_key,
        PYTHONUNBUFFERED="1",
    )
    if "MONGO_URI" not in overrides:
        # A throwaway embedded store per server, so tests never share (or leave) data; a test
        # that wants a durable one passes EXOSPHERE_MEMORY=None and its own EXOSPHERE_DATA_DIR.
        env["EXOSPHERE_MEMORY"] = "1"
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    return env


def start_server(
    *,
    api_key: str | None = None,
    startup_timeout: float = STARTUP_TIMEOUT_SECONDS,
    extra_args: tuple[str, ...] = (),
    port: int | None = None,
    encryption_key: str | None = None,
    **env_overrides: object,
) -> LiveServer:
    """Start the state manager and return once ``GET /health`` answers 200.

    ``env_overrides`` are set in the server's environment (values converted with ``str``; ``None``
    removes a variable), e.g. ``start_server(STATE_LEASE_SECONDS=2, RECOVERY_INTERVAL_SECONDS=1)``.
    The caller owns the result and must call ``stop()``; prefer ``running_server``.
    """
    api_key = api_key or f"test-key-{secrets.token_hex(8)}"
    encryption_key = encryption_key or new_encryption_key()
    env = _server_env(api_key, encryption_key, env_overrides)

    attempts = 3  # the free port can be taken between probing and binding; retry on a new one
    for attempt in range(1, attempts + 1):
        port = port or free_port()
        log_fd, log_name = tempfile.mkstemp(prefix="exosphere-server-", suffix=".log")
        log_file = os.fdopen(log_fd, "wb")
        command = [
            sys.executable,
            "-m",
            "state_manager",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *extra_args,
        ]
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        server = LiveServer(
            process=process,
            host="127.0.0.1",
            port=port,
            api_key=api_key,
            encryption_key=encryption_key,
            log_path=Path(log_name),
            env=env,
            _log_file=log_file,
        )
        try:
            server.wait_healthy(startup_timeout)
        except ServerStartError:
            server.stop()
            if attempt < attempts and "address already in use" in server.log_text().lower():
                continue
            raise
        return server
    raise AssertionError("unreachable")  # pragma: no cover


@contextlib.contextmanager
def running_server(**kwargs: Any) -> Iterator[LiveServer]:
    """``start_server`` as a context manager: the server is stopped on exit, even on error.

    If the block raises, the server's log tail is written to stderr to help the diagnosis.
    """
    server = start_server(**kwargs)
    try:
        yield server
    except BaseException:
        sys.stderr.write(f"\n--- state manager log ({server.log_path}) ---\n{server.log_tail()}\n")
        raise
    finally:
        server.stop()


@pytest.fixture
def live_server_factory() -> Iterator[Callable[..., LiveServer]]:
    """Fixture: a function that starts servers (``factory(**env)``); all are stopped at teardown."""
    started: list[LiveServer] = []

    def factory(**kwargs: Any) -> LiveServer:
        server = start_server(**kwargs)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()
