"""`python -m state_manager` refuses bad settings with a clear message, naming variables only,
and says loudly when it runs in development mode."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from state_manager.config import PUBLIC_DEV_ENCRYPTION_KEYS, PUBLIC_DEV_SECRETS
from tests.support.live_server import free_port


def _start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the server command in an empty folder (so no `.env` is read); it must exit at once."""
    keys = ("STATE_MANAGER_SECRET", "SECRETS_ENCRYPTION_KEY")
    base = {k: v for k, v in os.environ.items() if k not in keys}
    return subprocess.run(
        [sys.executable, "-m", "state_manager", "--port", "0"],
        env={**base, **env},
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_missing_keys_are_named() -> None:
    result = _start({})
    assert result.returncode == 2
    assert "STATE_MANAGER_SECRET: Field required" in result.stderr
    assert "SECRETS_ENCRYPTION_KEY: Field required" in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STATE_MANAGER_SECRET": "a-real-key", "SECRETS_ENCRYPTION_KEY": "tooshort"}, "32 bytes"),
        (
            {
                "STATE_MANAGER_SECRET": "exosphere@123",
                "SECRETS_ENCRYPTION_KEY": "YTzpUlBGLSwm-3yKJRJTZnb0_aQuQQHyz64s8qAERVU=",
            },
            "published example value",
        ),
    ],
)
def test_bad_or_published_keys_are_refused_without_echoing_them(env: dict[str, str], message: str) -> None:
    result = _start(env)
    assert result.returncode == 2
    assert message in result.stderr
    for value in env.values():
        assert value not in result.stderr


def test_memory_with_mongo_uri_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "state_manager", "--port", "0", "--dev", "--memory"],
        env={**os.environ, "MONGO_URI": "mongodb://127.0.0.1:1"},
        cwd=tempfile.gettempdir(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--memory (EXOSPHERE_MEMORY) is for the embedded store, but MONGO_URI is set" in result.stderr


ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def _env_example() -> dict[str, str]:
    """The KEY=VALUE lines of `.env.example`, as a user's `.env` would hold them unchanged."""
    lines = ENV_EXAMPLE.read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return {name.strip(): value.strip() for name, value in pairs}


@pytest.mark.parametrize("source", ["copied to .env", "exported"])
def test_env_example_unchanged_is_refused(source: str, tmp_path: Path) -> None:
    example = _env_example()
    assert example["STATE_MANAGER_SECRET"] in PUBLIC_DEV_SECRETS
    assert example["SECRETS_ENCRYPTION_KEY"] in PUBLIC_DEV_ENCRYPTION_KEYS
    env = {name: value for name, value in os.environ.items() if name.upper() not in example}
    if source == "copied to .env":
        shutil.copy(ENV_EXAMPLE, tmp_path / ".env")
    else:
        env.update(example)

    result = subprocess.run(
        [sys.executable, "-m", "state_manager", "--host", "127.0.0.1", "--port", str(free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,  # a server that started anyway is killed, and the test fails
    )

    assert result.returncode == 2, result.stdout + result.stderr
    assert "STATE_MANAGER_SECRET is a published example value" in result.stderr
    assert example["STATE_MANAGER_SECRET"] not in result.stdout + result.stderr


def test_development_mode_warns_at_start(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if name.upper() not in ("MODE", "MONGO_URI")}
    log_path = tmp_path / "server.log"
    command = [sys.executable, "-m", "state_manager", "--host", "127.0.0.1", "--port", str(free_port())]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [*command, "--dev"],
            env={**env, "PYTHONUNBUFFERED": "1"},
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            warning = _wait_for_json_line(log_path, "development_mode", process)
        finally:
            process.terminate()
            process.wait(timeout=10)

    assert warning["level"] == "warning"
    assert "published example keys are accepted" in warning["message"]
    assert "never use development mode in production" in warning["message"]


def _wait_for_json_line(path: Path, event: str, process: subprocess.Popen[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        complete_lines = path.read_text(errors="replace").split("\n")[:-1]
        for line in complete_lines:
            if line.startswith("{") and json.loads(line).get("event") == event:
                found: dict[str, Any] = json.loads(line)
                return found
        if process.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"no {event!r} line in the server's output:\n{path.read_text(errors='replace')}")


def test_a_port_in_use_stops_the_server_before_it_starts(tmp_path: Path) -> None:
    """One line naming the port, exit code 2, before the store starts or the app says it is up."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "state_manager", "--dev", "--memory", "--port", str(port)],
            env={**os.environ, "LOG_FORMAT": "json"},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert result.returncode == 2
    assert f"error: cannot listen on 127.0.0.1:{port}: address already in use" in result.stderr
    assert "--port" in result.stderr
    output = result.stdout + result.stderr
    assert "startup complete" not in output.lower() and "embedded_store" not in output
