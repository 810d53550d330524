"""The embedded database engine: nx-27017 (the MongoDB wire protocol on SQLite) as a child process.

::

    with open_data_dir(Path(".exosphere")) as data_dir, run_engine(data_dir) as engine:
        engine.uri  # mongodb://127.0.0.1:PORT: Motor talks to it exactly as to MongoDB

    with run_engine(None) as engine:  # a throwaway in-memory engine: nothing is kept
        ...

    with temporary_store() as uri:  # tests and benchmarks: an engine on a temporary directory
        ...

`open_data_dir` creates the directory and takes its lock (`fcntl.flock` on `server.lock`). The
lock is held for the life of the server AND of its engine (the engine inherits it), so one
directory is never used by two engines, not even while a killed server's engine is exiting.

The engine never outlives the process that started it, even one killed with SIGKILL: it runs
through `state_manager/store/_child.py`, which on Linux asks the kernel to send it SIGTERM when
its parent dies (`prctl(PR_SET_PDEATHSIG)`), and on every platform watches its parent pid. (The
kernel ties PDEATHSIG to the *thread* that started the child: start engines from a thread that
lives as long as they should, e.g. the main thread.) It runs in its own session, so a Ctrl-C in
the terminal reaches only the server, which then stops the engine after its own shutdown.

It listens on 127.0.0.1, on a port the kernel picks (`--port 0`, read back from its log): no race
for a free port. (nx-27017 0.8 cannot listen on a Unix socket.) Its log is `nx-27017.log` in the
data directory; the previous one is kept as `nx-27017.log.1`.

This module only imports the standard library: the server, the tests and the benchmarks use it.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ENGINE = "nx-27017"
HOST = "127.0.0.1"
LOCK_FILE = "server.lock"
DATABASE_FILE = "store.db"
LOG_FILE = "nx-27017.log"
PID_FILE = "nx-27017.pid"

START_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 10.0
# A server killed a moment ago leaves its engine a moment to exit (it holds the lock until then).
LOCK_WAIT_SECONDS = 2.0
LOG_ROTATE_BYTES = 1024 * 1024
LOG_TAIL_LINES = 30

_CHILD = Path(__file__).with_name("_child.py")
_LISTENING = re.compile(rb"Listening on [^\s:]+:(\d+)")


class StoreError(Exception):
    """The embedded store cannot be used; the message says why and what to do."""


class DataDirInUse(StoreError):
    """Another server (or the engine of one that is stopping) holds the data directory's lock."""


@dataclass(frozen=True)
class DataDir:
    """A data directory whose lock this process holds (see `open_data_dir`)."""

    path: Path
    lock_fd: int


@dataclass(frozen=True)
class Engine:
    """A running engine. `data_dir` is None for a throwaway in-memory engine."""

    uri: str
    port: int
    pid: int
    data_dir: Path | None
    log_path: Path


@contextlib.contextmanager
def open_data_dir(path: Path | str, *, lock_wait_seconds: float = LOCK_WAIT_SECONDS) -> Iterator[DataDir]:
    """Create `path` if needed, check it is writable and lock it for as long as the block runs.

    Raises `DataDirInUse` when another server holds it, `StoreError` when it cannot be used.
    """
    directory = Path(path).expanduser().absolute()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise _unusable(directory, exc) from exc
    try:
        _lock(fd, directory, lock_wait_seconds)
        try:
            with tempfile.TemporaryFile(dir=directory):  # the engine must be able to write here
                pass
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:
            raise _unusable(directory, exc) from exc
        yield DataDir(path=directory, lock_fd=fd)
    finally:
        os.close(fd)  # releases the lock, unless an engine that still runs inherited it


def ensure_data_dir(path: Path | str) -> Path:
    """Create `path` if needed (without locking it): for the dev keys when MONGO_URI is set."""
    directory = Path(path).expanduser().absolute()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unusable(directory, exc) from exc
    return directory


def _unusable(directory: Path, exc: OSError) -> StoreError:
    return StoreError(
        f"the data directory {directory} cannot be used ({exc.strerror or exc}): make it a writable"
        " directory, or choose another with --data-dir DIR or EXOSPHERE_DATA_DIR"
        " (or --memory for a throwaway store)"
    )


def _lock(fd: int, directory: Path, wait_seconds: float) -> None:
    import fcntl  # POSIX only: imported here so that a server with MONGO_URI runs anywhere

    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)
    holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
    by = f" (pid {holder})" if holder.isdigit() else ""
    raise DataDirInUse(
        f"another state manager server{by} is using the data directory {directory}: stop it first,"
        " or start this one with another --data-dir DIR (or EXOSPHERE_DATA_DIR)"
    )


@contextlib.contextmanager
def run_engine(data_dir: DataDir | None, *, start_timeout: float = START_TIMEOUT_SECONDS) -> Iterator[Engine]:
    """Start nx-27017 on `data_dir` (None: in memory) and stop it when the block exits.

    Raises `StoreError`, with the tail of the engine's log, when it exits or does not listen
    within `start_timeout` seconds.
    """
    with contextlib.ExitStack() as stack:
        inherited: tuple[int, ...] = ()
        if data_dir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="exosphere-memory-")))
            database = "memory"
        else:
            workdir = data_dir.path
            database, inherited = str(workdir / DATABASE_FILE), (data_dir.lock_fd,)
        log_path = workdir / LOG_FILE
        pid_path = workdir / PID_FILE
        try:
            _rotate(log_path)
            # Left behind by an engine that was killed; nx-27017 refuses to start while it names
            # a live process (maybe an unrelated one by now). We hold the lock: no engine runs here.
            pid_path.unlink(missing_ok=True)
            log_file = stack.enter_context(log_path.open("ab"))
        except OSError as exc:
            raise _unusable(workdir, exc) from exc
        start_offset = log_file.tell()
        command = [
            sys.executable,
            str(_CHILD),
            str(os.getpid()),
            *("--db", database, "--host", HOST, "--port", "0"),
            # Its records go to stderr, i.e. to our log file: the file handler would duplicate them.
            *("--log-file", os.devnull, "--pid-file", str(pid_path)),
        ]
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            pass_fds=inherited,
            start_new_session=True,
        )
        stack.callback(_stop, process)
        port = _wait_listening(process, log_path, start_offset, start_timeout)
        yield Engine(
            uri=f"mongodb://{HOST}:{port}",
            port=port,
            pid=process.pid,
            data_dir=None if data_dir is None else data_dir.path,
            log_path=log_path,
        )


@contextlib.contextmanager
def temporary_store() -> Iterator[str]:
    """An engine on a new temporary directory, deleted afterwards; yields its `mongodb://` URI.

    For tests and benchmarks that need a store outliving the servers they start and stop.
    """
    with (
        tempfile.TemporaryDirectory(prefix="exosphere-nx-") as folder,
        open_data_dir(folder) as data_dir,
        run_engine(data_dir) as engine,
    ):
        yield engine.uri


def _rotate(log_path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if log_path.stat().st_size > LOG_ROTATE_BYTES:
            log_path.replace(log_path.with_name(log_path.name + ".1"))


def _wait_listening(process: subprocess.Popen[bytes], log_path: Path, offset: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while True:
        with log_path.open("rb") as log:
            log.seek(offset)
            found = _LISTENING.search(log.read())
        if found:
            return int(found.group(1))
        if process.poll() is not None:
            problem = f"exited with code {process.returncode} before it listened"
            break
        if time.monotonic() >= deadline:
            problem = f"did not listen within {timeout:.0f} s"
            break
        time.sleep(0.05)
    raise StoreError(
        f"the embedded store ({ENGINE}) {problem}. Its log ({log_path}) ends with:\n"
        f"{_tail(log_path, offset)}\n"
        "Check the data directory (disk space, permissions, a damaged store.db: restore a backup or move"
        " it away), choose another with --data-dir DIR, or set MONGO_URI to use a MongoDB server."
    )


def _tail(log_path: Path, offset: int) -> str:
    try:
        with log_path.open("rb") as log:
            log.seek(offset)
            lines = log.read().decode(errors="replace").splitlines()
    except OSError:
        return "  (no log)"
    return "\n".join(f"  {line}" for line in lines[-LOG_TAIL_LINES:]) or "  (empty)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()
