"""`python -m state_manager` without MONGO_URI: the embedded store (nx-27017 as a child process).

What a user of `make run` notices: graphs, runs and secrets are still there after a restart, and
`--dev` prints the same key; a killed server leaves no engine behind; a second server on the same
data directory, or a directory that cannot be used, is refused with a message (exit code 2);
`--memory` keeps nothing.
"""

from __future__ import annotations

import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories import graph, node, registration, template
from tests.support.dev_server import dev_command, dev_env, start_dev_server
from tests.support.live_server import LiveServer, new_encryption_key

pytestmark = pytest.mark.e2e

NS = "embedded"
SECRET = "s3cret-token-value"


def _env(**extra: str) -> dict[str, str]:
    return dev_env(**extra)


def _command(*args: str, port: int | None = None) -> list[str]:
    return dev_command(*args, port=port)


def _start(cwd: Path, *args: str) -> LiveServer:
    """Start the server in `cwd` (no `.env` there) and wait until it is healthy; read its key."""
    server = start_dev_server(cwd, *args, env=_env())
    try:
        assert f"Dashboard: http://127.0.0.1:{server.port}/ui" in server.log_text()
    except BaseException:
        server.stop()
        raise
    return server


def _refused(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a server that must refuse to start (a server that starts anyway is killed: the test fails)."""
    return subprocess.run(
        _command(*args), cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=30
    )


def _client(server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=f"{server.base_url}/v0/namespace/{NS}", headers=server.headers, timeout=10.0)


def _call(client: httpx.Client, method: str, url: str, body: Any = None, expect: int = 200) -> Any:
    response = client.request(method, url, json=body)
    assert response.status_code == expect, f"{method} {url}: {response.status_code} {response.text}"
    return response.json()


def _setup_graph_and_run(server: LiveServer) -> str:
    """Register a node that needs a secret, upsert a graph that sets it, trigger a run: its id."""
    with _client(server) as client:
        _call(client, "PUT", "/nodes/", registration(node("Fetch", secrets=["token"])))
        stored = _call(
            client,
            "PUT",
            "/graph/fetcher",
            graph(template("fetch", "Fetch", {"x": "go"}, namespace=NS), secrets={"token": SECRET}),
            expect=201,
        )
        assert stored["validation_status"] == "VALID", stored
        run_id: str = _call(client, "POST", "/graph/fetcher/trigger", {})["run_id"]
    return run_id


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _stat(pid: int) -> list[str] | None:
    """State and parent pid onwards of /proc/PID/stat, or None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2 :].split()


def _gone(pid: int) -> bool:
    fields = _stat(pid)
    return fields is None or fields[0] in ("Z", "X")  # a zombie no longer runs or holds anything


def _wait_gone(pid: int, limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while not _gone(pid):
        assert time.monotonic() < deadline, f"the engine (pid {pid}) outlived its server by {limit:.0f}s"
        time.sleep(0.05)


def test_graphs_runs_secrets_and_the_key_survive_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = _start(tmp_path, "--data-dir", str(data))
    try:
        engines = _children(first.process.pid)
        run_id = _setup_graph_and_run(first)
    finally:
        first.stop()
    assert engines, "no engine process was started"
    for pid in engines:
        _wait_gone(pid)
    assert stat.S_IMODE((data / "dev-keys.json").stat().st_mode) == 0o600

    second = _start(tmp_path, "--data-dir", str(data))
    try:
        assert second.api_key == first.api_key
        with _client(second) as client:
            assert _call(client, "GET", "/graph/fetcher")["secrets"] == {"token": True}
            runs = _call(client, "GET", "/runs/1/10")["runs"]
            assert [run["run_id"] for run in runs] == [run_id]
            claimed = _call(client, "POST", "/states/enqueue", {"nodes": ["Fetch"], "batch_size": 10})
            assert [state["run_id"] for state in claimed["states"]] == [run_id]
            state_id = claimed["states"][0]["state_id"]
            # Decrypted with the encryption key kept in the data directory.
            assert _call(client, "GET", f"/state/{state_id}/secrets") == {"secrets": {"token": SECRET}}
    finally:
        second.stop()

    # A key set in the environment wins over the stored one, and the startup check reads the
    # embedded store: this one cannot decrypt the stored secret.
    result = _refused(tmp_path, "--data-dir", str(data), SECRETS_ENCRYPTION_KEY=new_encryption_key())
    assert result.returncode == 2, result.stdout + result.stderr
    assert "SECRETS_ENCRYPTION_KEY cannot decrypt the secrets stored for graph 'fetcher'" in result.stderr
    assert SECRET not in result.stdout + result.stderr


def test_a_killed_server_leaves_no_engine_behind(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = _start(tmp_path, "--data-dir", str(data))
    try:
        engines = _children(server.process.pid)
        assert engines, "no engine process was started"
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)
        for pid in engines:
            _wait_gone(pid)
    finally:
        server.stop()

    again = _start(tmp_path, "--data-dir", str(data))  # the directory is free again
    try:
        assert again.api_key == server.api_key
    finally:
        again.stop()


def test_a_second_server_on_the_same_data_directory_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = _start(tmp_path, "--data-dir", str(data))
    try:
        result = _refused(tmp_path, "--data-dir", str(data))
        assert first.is_running()
        assert httpx.get(f"{first.base_url}/health").status_code == 200
    finally:
        first.stop()
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"another state manager server (pid {first.process.pid}) is using the data directory {data}" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_a_data_directory_that_cannot_be_created_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")  # holds for root too, unlike permissions
    data = tmp_path / "file" / "sub"

    result = _refused(tmp_path, "--data-dir", str(data))

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"error: the data directory {data} cannot be used")
    assert "--data-dir" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_engine_that_cannot_start_is_reported(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "store.db").write_bytes(b"damaged" * 1000)

    result = _refused(tmp_path, "--data-dir", str(data))

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(
        "error: the embedded store (nx-27017) exited with code 1 before it listened"
    )
    assert f"Its log ({data / 'nx-27017.log'}) ends with:" in result.stderr
    assert "file is not a database" in result.stderr


def test_memory_keeps_nothing(tmp_path: Path) -> None:
    first = _start(tmp_path, "--memory")
    try:
        assert "throwaway" in first.log_text()
        _setup_graph_and_run(first)
    finally:
        first.stop()

    second = _start(tmp_path, "--memory")
    try:
        with _client(second) as client:
            _call(client, "GET", "/graph/fetcher", expect=404)
            assert _call(client, "GET", "/runs/1/10")["runs"] == []
    finally:
        second.stop()
    assert second.api_key != first.api_key
    assert not (tmp_path / ".exosphere").exists()
