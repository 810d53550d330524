"""On a terminal: rich tables and colour; with NO_COLOR or without a terminal: plain text."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from exospherehost import Runtime
from tests.cli.conftest import CLI_TIMEOUT_SECONDS, Cli, write

pytestmark = pytest.mark.e2e

ESC = "\x1b["


def _on_terminal(cli: Cli, *args: str, no_color: bool) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on a pseudo-terminal; answer its exit code and output."""
    env = {name: value for name, value in os.environ.items() if name != "NO_COLOR"}
    env.update(cli.env, COLUMNS="160", TERM="xterm-256color")
    if no_color:
        env["NO_COLOR"] = "1"
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "exospherehost.cli", *args],
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=follower,
            env=env,
        )
        os.close(follower)
        chunks: list[bytes] = []
        deadline = time.monotonic() + CLI_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if not select.select([leader], [], [], 0.5)[0]:
                continue
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        if process.poll() is None:
            process.kill()
        code = process.wait(timeout=10)
    finally:
        os.close(leader)
    return code, b"".join(chunks).decode(errors="replace")


async def test_a_terminal_gets_colour_unless_no_color_is_set(
    cli: Cli, worker: Runtime, ns: str, tmp_path: Path
) -> None:
    graph = f"name: t\nnodes: [{{node_name: Upper, namespace: {ns}, identifier: u, inputs: {{text: x}}}}]\n"
    assert (await cli("graph", "apply", str(write(tmp_path, f"{uuid.uuid4().hex}.yaml", graph)))).code == 0

    coloured = await asyncio.to_thread(_on_terminal, cli, "run", "trigger", "t", "--watch", no_color=False)
    plain = await asyncio.to_thread(_on_terminal, cli, "run", "trigger", "t", "--watch", no_color=True)
    plain_list = await asyncio.to_thread(_on_terminal, cli, "graph", "list", no_color=True)

    assert coloured[0] == 0, coloured[1]
    assert ESC in coloured[1] and "SUCCESS" in coloured[1]
    assert plain[0] == 0, plain[1]
    assert ESC not in plain[1]
    assert "u: SUCCESS" in plain[1]  # the line-per-change progress instead of the live display
    assert plain_list[1].splitlines()[0].split() == ["NAME", "STATUS", "NODES", "SECRETS", "UPDATED"]
