"""The data directory's lock after a crash, and the `--memory` directories killed servers leave.

A killed server's engine holds the lock (it inherited it) until it notices and exits: a restart
waits for it instead of failing, while a server that still runs is refused at once. Here a small
process stands for that engine (or server): it takes the lock, and the lock file names a pid.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from state_manager.store import DataDirInUse, embedded, open_data_dir

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _hold(lock_file: Path, seconds: float) -> subprocess.Popen[str]:
    """A process that holds the lock on `lock_file` for `seconds`, once this returns."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(lock_file), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "locked\n"
    return process


@pytest.fixture
def holders() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        process.kill()
        process.communicate()  # reaped, its pipe closed


def test_a_restart_waits_for_the_engine_of_a_dead_server_and_says_so(
    tmp_path: Path, holders: list[subprocess.Popen[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    dead = _dead_pid()
    (tmp_path / "server.lock").write_text(f"{dead}\n")
    holders.append(_hold(tmp_path / "server.lock", 2.5))  # longer than the old 2 s limit
    started = time.monotonic()

    with open_data_dir(tmp_path) as data_dir:
        waited = time.monotonic() - started
        assert (tmp_path / "server.lock").read_text() == f"{os.getpid()}\n"
        assert data_dir.path == tmp_path

    assert 1.5 < waited < 8
    message = capsys.readouterr().err
    assert message == (
        f"Waiting for the engine of a stopped server (pid {dead}) to let go of the data directory"
        f" {tmp_path} (up to 10 s)\n"
    )


def test_a_server_that_still_runs_is_refused_at_once(
    tmp_path: Path, holders: list[subprocess.Popen[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    holder = _hold(tmp_path / "server.lock", 60)
    holders.append(holder)
    (tmp_path / "server.lock").write_text(f"{holder.pid}\n")
    started = time.monotonic()

    with pytest.raises(DataDirInUse) as refused, open_data_dir(tmp_path):
        pass

    assert time.monotonic() - started < 1
    assert f"another state manager server (pid {holder.pid}) is using the data directory {tmp_path}" in str(
        refused.value
    )
    assert capsys.readouterr().err == ""


def test_an_engine_that_does_not_let_go_is_named(
    tmp_path: Path, holders: list[subprocess.Popen[str]]
) -> None:
    dead = _dead_pid()
    (tmp_path / "server.lock").write_text(f"{dead}\n")
    engine = _hold(tmp_path / "server.lock", 60)
    holders.append(engine)
    (tmp_path / "nx-27017.pid").write_text(f"{engine.pid}\n")

    with pytest.raises(DataDirInUse) as refused, open_data_dir(tmp_path, lock_wait_seconds=0.3):
        pass

    assert str(refused.value).startswith(
        f"the engine (nx-27017, pid {engine.pid}) of a stopped state manager server (pid {dead}) still holds"
        f" the data directory {tmp_path}"
    )


def test_only_the_memory_directories_nobody_uses_are_removed(
    tmp_path: Path, holders: list[subprocess.Popen[str]]
) -> None:
    def memory_dir(name: str, lock_file: str | None) -> Path:
        directory = tmp_path / f"exosphere-memory-{name}"
        directory.mkdir()
        (directory / "nx-27017.log").write_text("...")
        if lock_file is not None:
            (directory / "server.lock").write_text(lock_file)
        return directory

    in_use = memory_dir("in-use", f"{_dead_pid()}\n")  # its server is gone, its engine is not
    holders.append(_hold(in_use / "server.lock", 60))
    killed = memory_dir("killed", f"{_dead_pid()}\n")
    being_created = memory_dir("new", None)
    being_locked = memory_dir("locking", "")  # its creator is about to take the lock
    from_an_older_version = memory_dir("old", None)
    an_hour_ago = time.time() - 3600
    os.utime(from_an_older_version, (an_hour_ago, an_hour_ago))
    unrelated = tmp_path / "exosphere-nx-other"
    unrelated.mkdir()

    removed = embedded.remove_stale_memory_dirs(tmp_path)

    assert sorted(removed) == sorted([killed, from_an_older_version])
    assert sorted(tmp_path.iterdir()) == sorted([in_use, being_created, being_locked, unrelated])
    # The lock of a directory in use was not disturbed.
    with open(in_use / "server.lock", "rb") as lock_file, pytest.raises(BlockingIOError):
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
