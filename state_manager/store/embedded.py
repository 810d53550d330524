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
directory is never used by two engines, not even while a killed server's engine is exiting. A
server started while the lock's holder (the pid in `server.lock`) still runs is refused at once;
one started right after a crash, while the dead server's engine is still exiting (it takes a
moment to notice: 1.7 s measured), waits for it (up to 10 s) and says so.

`run_engine(..., on_exit=...)` watches the engine: if it exits while the server still uses it
(it crashed or was killed), a thread calls `on_exit` at once, so that the server can stop
instead of answering every request after a 30 s wait for a database that is gone.

The engine never outlives the process that started it, even one killed with SIGKILL: it runs
through `state_manager/store/_child.py`, which on Linux asks the kernel to send it SIGTERM when
its parent dies (`prctl(PR_SET_PDEATHSIG)`), and on every platform watches its parent pid. (The
kernel ties PDEATHSIG to the *thread* that started the child: start engines from a thread that
lives as long as they should, e.g. the main thread.) It runs in its own session, so a Ctrl-C in
the terminal reaches only the server, which then stops the engine after its own shutdown.

It listens on 127.0.0.1, on a port the kernel picks (`--port 0`, read back from its log): no race
for a free port. (nx-27017 0.8 cannot listen on a Unix socket.) Its log is `nx-27017.log` in the
data directory; the previous one is kept as `nx-27017.log.1`.

A throwaway engine (`run_engine(None)`, `--memory`) still gets a directory, for its log:
`exosphere-memory-*` in the temporary directory, locked like a data directory and removed when
the server stops. A server killed with SIGKILL cannot remove it, so each throwaway start removes
those that nobody holds the lock of any more (`remove_stale_memory_dirs`).

This module only imports the standard library: the server, the tests and the benchmarks use it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
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
LOCK_WAIT_SECONDS = 10.0
MEMORY_DIR_PREFIX = "exosphere-memory-"
# A throwaway directory whose lock file names no server is being created right now (its creator
# locks it at once) or was left by a version that did not lock it: the latter is removed once this old.
UNLOCKED_MEMORY_DIR_SECONDS = 60.0
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
    """Take the lock on `fd` (the directory's `server.lock`), or raise `DataDirInUse`.

    The lock file names the server that took it. While that server runs, the answer is no, at
    once. Once it is gone (killed), the lock is held only by its engine, which exits as soon as
    it notices: wait for it, up to `wait_seconds`, rather than fail the restart a supervisor
    makes right after a crash.
    """
    import fcntl  # POSIX only: imported here so that a server with MONGO_URI runs anywhere

    deadline = None
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        holder = int(text) if text.isdigit() else None
        by = f" (pid {holder})" if holder else ""
        if holder is not None and _running(holder):
            raise DataDirInUse(
                f"another state manager server{by} is using the data directory {directory}: stop it first,"
                " or start this one with another --data-dir DIR (or EXOSPHERE_DATA_DIR)"
            )
        if deadline is None:
            deadline = time.monotonic() + wait_seconds
            print(  # noqa: T201 (one line, before logging is set up for the server)
                f"Waiting for the engine of a stopped server{by} to let go of the data directory"
                f" {directory} (up to {wait_seconds:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
        elif time.monotonic() >= deadline:
            engine = _read_pid(directory / PID_FILE)
            which = f"{ENGINE}, pid {engine}" if engine else ENGINE
            raise DataDirInUse(
                f"the engine ({which}) of a stopped state manager server{by} still holds the data"
                f" directory {directory} after {wait_seconds:.0f} s: stop that process, or start this"
                " one with another --data-dir DIR (or EXOSPHERE_DATA_DIR)"
            )
        time.sleep(0.1)


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _running(pid: int) -> bool:
    """Whether process `pid` runs. A zombie (dead, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (not Linux): it runs, as far as we can tell
        return True
    return stat[stat.rindex(")") + 2] not in "ZX"


def remove_stale_memory_dirs(parent: Path | str | None = None) -> list[Path]:
    """Remove the throwaway (`--memory`) directories that no server or engine uses any more.

    A server removes its own when it stops, unless it was killed (SIGKILL). Each one is locked,
    by its server and its engine, as a data directory is, and its lock file names the server
    once it holds the lock: a directory whose lock file names a server and whose lock can be
    taken is used by nobody. One whose lock file is missing or empty is being created this instant
    (never touched then: not even the lock is tried, which would make its creator wait), or was
    left by an older version: it is removed once a minute old. `parent` is the temporary
    directory by default. Returns the directories removed.
    """
    import fcntl

    removed = []
    for directory in Path(parent or tempfile.gettempdir()).glob(MEMORY_DIR_PREFIX + "*"):
        try:
            fd = os.open(directory / LOCK_FILE, os.O_RDWR)
        except FileNotFoundError:
            fd = None
        except OSError:  # not a directory, or another user's
            continue
        try:
            if fd is None or not os.pread(fd, 32, 0).strip():
                stale = time.time() - directory.stat().st_mtime > UNLOCKED_MEMORY_DIR_SECONDS
            else:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                stale = True
        except OSError:  # BlockingIOError: in use
            stale = False
        finally:
            if fd is not None:
                os.close(fd)
        if stale:
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    return removed


@contextlib.contextmanager
def run_engine(
    data_dir: DataDir | None,
    *,
    start_timeout: float = START_TIMEOUT_SECONDS,
    on_exit: Callable[[Engine, int], None] | None = None,
) -> Iterator[Engine]:
    """Start nx-27017 on `data_dir` (None: in memory) and stop it when the block exits.

    Raises `StoreError`, with the tail of the engine's log, when it exits or does not listen
    within `start_timeout` seconds. If the engine exits on its own while the block runs (it
    crashed, or was killed), `on_exit(engine, returncode)` is called at once, from a thread that
    waits for it (returncode: as `subprocess` gives it, -9 for SIGKILL).
    """
    throwaway = data_dir is None
    with contextlib.ExitStack() as stack:
        if data_dir is None:  # a directory for its log only, locked as a data directory
            remove_stale_memory_dirs()
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix=MEMORY_DIR_PREFIX))
            data_dir = stack.enter_context(open_data_dir(folder))
        workdir = data_dir.path
        database = "memory" if throwaway else str(workdir / DATABASE_FILE)
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
            pass_fds=(data_dir.lock_fd,),
            start_new_session=True,
        )
        stack.callback(_stop, process)
        port = _wait_listening(process, log_path, start_offset, start_timeout)
        engine = Engine(
            uri=f"mongodb://{HOST}:{port}",
            port=port,
            pid=process.pid,
            data_dir=None if throwaway else workdir,
            log_path=log_path,
        )
        if on_exit is not None:
            stopping = threading.Event()
            stack.callback(stopping.set)  # before `_stop` (callbacks run last in, first out)
            threading.Thread(
                target=_watch, args=(process, engine, stopping, on_exit), name="engine-watch", daemon=True
            ).start()
        yield engine


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


def _watch(
    process: subprocess.Popen[bytes],
    engine: Engine,
    stopping: threading.Event,
    on_exit: Callable[[Engine, int], None],
) -> None:
    returncode = process.wait()
    if not stopping.is_set():
        on_exit(engine, returncode)


def exit_reason(returncode: int) -> str:
    """`exited with code 1`, `was killed by SIGKILL`: a process's end, as `subprocess` reports it."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    try:
        return f"was killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"was killed by signal {-returncode}"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()
