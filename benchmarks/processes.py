"""The processes a benchmark runs: the state manager, nx-27017, and their CPU clocks.

Everything listens on 127.0.0.1 only. Every process started here is stopped when its context
manager exits, also on an exception or Ctrl-C (the harness turns SIGTERM into the same path).
Processes start in their own session, so a Ctrl-C in the terminal reaches only the harness,
which then stops them in order.

CPU time is read from `/proc/<pid>/stat` (utime + stime, Linux): no extra dependency.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Variables of the developer's shell that must not reach a benchmark server (and any
# EXOSPHERE_*, e.g. a data directory: the embedded store keeps its data under the server's
# working directory, a temporary one here).
_SCRUBBED_ENV = (
    "MONGO_URI",
    "MONGO_DATABASE_NAME",
    "STATE_MANAGER_SECRET",
    "SECRETS_ENCRYPTION_KEY",
    "MOCK_STORE",
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------- /proc


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process has used so far (None if it is gone)."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of stat(5)
    return (utime + stime) / _CLOCK_TICKS


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot: tells a pid from a reused one."""
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[19])


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (children, grandchildren...)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class CpuClock:
    """CPU seconds of a set of processes between `start()` and `read()`."""

    pids: list[int]
    _base: dict[int, float] = field(default_factory=dict)

    def start(self) -> None:
        self._base = {pid: cpu_seconds(pid) or 0.0 for pid in self.pids}

    def read(self) -> float | None:
        if not self.pids:
            return None
        total = 0.0
        for pid in self.pids:
            now = cpu_seconds(pid)
            if now is not None:
                total += now - self._base.get(pid, 0.0)
        return total


# ---------------------------------------------------------------- stopping


def stop_process(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, then SIGKILL after `timeout`. Idempotent."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def _stop_leftovers(known: dict[int, int | None]) -> None:
    """Stop processes (pid -> start time) that a stopped server left behind, if still the same."""
    for pid, started in known.items():
        if started is None or start_time(pid) != started:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for pid, started in known.items():
        while started is not None and start_time(pid) == started and time.monotonic() < deadline:
            time.sleep(0.05)
        if started is not None and start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before listening")
        with socket.socket() as probe:
            if probe.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {limit:.0f}s")


# ---------------------------------------------------------------- nx-27017


@dataclass(frozen=True)
class Store:
    """nx-27017 (the MongoDB wire protocol on SQLite) as an external database."""

    uri: str
    pid: int


def _nx_command() -> str:
    beside = Path(sys.executable).parent / "nx-27017"
    if beside.exists():
        return str(beside)
    found = shutil.which("nx-27017")
    if found is None:
        raise RuntimeError("nx-27017 is not installed (it is in the dev extra: pip install -e '.[dev]')")
    return found


@contextlib.contextmanager
def nx_store(workdir: Path) -> Iterator[Store]:
    """Start nx-27017 with its data in `workdir`; yield its URI; stop it on exit."""
    folder = workdir / "nx"
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [
        _nx_command(),
        *("--db", str(folder / "store.db"), "--port", str(port)),
        *("--log-file", str(folder / "nx.log"), "--pid-file", str(folder / "nx.pid")),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        _wait_for_port(port, process, "nx-27017")
        yield Store(uri=f"mongodb://{HOST}:{port}", pid=process.pid)
    finally:
        stop_process(process)


# ---------------------------------------------------------------- the state manager


@dataclass
class Server:
    """A running `python -m state_manager`."""

    process: subprocess.Popen[bytes]
    port: int
    api_key: str
    log_path: Path
    external_db: bool
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.api_key}

    def store_pids(self) -> list[int]:
        """The embedded store: the server's child processes (none while the store is in-process)."""
        return [] if self.external_db else descendants(self.pid)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _server_env(api_key: str, mongo_uri: str | None, extra: dict[str, str]) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in _SCRUBBED_ENV and not name.startswith("EXOSPHERE_")
    }
    env.update(
        STATE_MANAGER_SECRET=api_key,
        SECRETS_ENCRYPTION_KEY=base64.urlsafe_b64encode(os.urandom(32)).decode(),
        # A fresh database per server: the embedded store may keep data between runs.
        MONGO_DATABASE_NAME=f"bench{uuid.uuid4().hex[:10]}",
        COUNT_DB_COMMANDS="1",
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    if mongo_uri is not None:
        env["MONGO_URI"] = mongo_uri
    env.update(extra)
    return env


def _wait_healthy(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    problem = "no answer"
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(
                    f"state manager exited with code {server.process.returncode}:\n{server.log_tail()}"
                )
            try:
                response = client.get(f"{server.base_url}/health")
                if response.status_code == 200:
                    return
                problem = f"/health -> {response.status_code}"
            except httpx.TransportError as exc:
                problem = repr(exc)
            time.sleep(0.05)
    raise RuntimeError(f"state manager not healthy after {timeout:.0f}s ({problem}):\n{server.log_tail()}")


@contextlib.contextmanager
def state_manager(
    workdir: Path, mongo_uri: str | None = None, extra_env: dict[str, str] | None = None
) -> Iterator[Server]:
    """`python -m state_manager --dev` on a free loopback port, run from `workdir` (so no `.env`
    of the repository applies and an embedded store keeps its files there). With `mongo_uri`
    None the server uses its default (embedded) store, whatever that is."""
    api_key = f"bench-{secrets.token_hex(8)}"
    env = _server_env(api_key, mongo_uri, extra_env or {})
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = workdir / "server.log"
    log = log_path.open("wb")
    # EXOSPHERE_BENCH_SERVER_SCRIPT: run that script instead of `-m state_manager` (e.g. a patched
    # entry point while trying out a server change); it takes the same arguments.
    entry = os.environ.get("EXOSPHERE_BENCH_SERVER_SCRIPT")
    command = [sys.executable, *([entry] if entry else ["-m", "state_manager"])]
    command += ["--host", HOST, "--port", str(port), "--dev"]
    process = subprocess.Popen(
        command,
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = Server(process, port, api_key, log_path, external_db=mongo_uri is not None, _log=log)
    children: dict[int, int | None] = {}
    try:
        _wait_healthy(server, STARTUP_TIMEOUT)
        children = {pid: start_time(pid) for pid in descendants(process.pid)}
        yield server
    finally:
        children.update({pid: start_time(pid) for pid in descendants(process.pid)})
        stop_process(process)
        _stop_leftovers(children)  # a child store the server did not stop
        log.close()


def install_sigterm_handler() -> None:
    """Make SIGTERM unwind like Ctrl-C, so every `finally` stops what it started."""

    def handler(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
