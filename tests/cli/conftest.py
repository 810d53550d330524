"""The `exosphere` CLI against a real server: one server per module (the e2e suite's fixture),
a real runtime per test, and the CLI run as a user runs it, in its own process."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from exospherehost import Runtime
from tests.e2e.conftest import server  # noqa: F401 - the module-scoped live server fixture
from tests.e2e.nodes import Boom, Flaky, Sign, Slow, Split, Upper
from tests.support.live_server import LiveServer, live_server_factory  # noqa: F401 - a fixture

CLI_TIMEOUT_SECONDS = 40.0
WORKER_NODES = [Upper, Boom, Flaky, Sign, Slow, Split]


@dataclass
class Result:
    """What one `exosphere` invocation did."""

    args: Sequence[str]
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """stdout parsed as ONE JSON document (fails if anything else is on stdout)."""
        try:
            return json.loads(self.stdout)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"stdout of {self} is not one JSON document: {exc}") from exc

    def __str__(self) -> str:
        command = " ".join(self.args)
        return f"exosphere {command} -> {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


@dataclass
class Cli:
    """Runs `python -m exospherehost.cli` with the connection settings in its environment."""

    env: dict[str, str] = field(default_factory=dict)
    command: Sequence[str] = (sys.executable, "-m", "exospherehost.cli")

    async def __call__(
        self, *args: str, env: dict[str, str] | None = None, stdin: str | None = None
    ) -> Result:
        inherited = {name: value for name, value in os.environ.items() if name != "NO_COLOR"}
        full_env = {**inherited, **self.env, **(env or {})}
        process = await asyncio.create_subprocess_exec(
            *self.command,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=full_env,
        )
        data = stdin.encode() if stdin is not None else None
        try:
            out, err = await asyncio.wait_for(process.communicate(data), CLI_TIMEOUT_SECONDS)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError(
                f"exosphere {' '.join(args)} still running after {CLI_TIMEOUT_SECONDS}s"
            ) from None
        assert process.returncode is not None
        return Result(args, process.returncode, out.decode(), err.decode())


@pytest.fixture
def ns() -> str:
    return f"cli-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def cli(server: LiveServer, ns: str) -> Cli:  # noqa: F811 - the imported fixture
    return Cli(
        env={
            "EXOSPHERE_STATE_MANAGER_URI": server.base_url,
            "EXOSPHERE_API_KEY": server.api_key,
            "EXOSPHERE_NAMESPACE": ns,
        }
    )


@pytest.fixture
async def worker(server: LiveServer, ns: str) -> AsyncIterator[Runtime]:  # noqa: F811
    """A runtime serving the e2e test nodes in the test's namespace."""
    runtime = Runtime(ns, "cli-worker", WORKER_NODES, state_manager_uri=server.base_url, key=server.api_key)
    async with runtime:
        yield runtime


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path
