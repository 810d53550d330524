"""Counting the database commands the server sends (benchmarks read them; off by default).

`install_command_counter()` registers one `CommandCounter` with pymongo's global monitoring, so it
sees every command of every Motor client created AFTER it (pymongo copies the global listeners
into a client when the client is built): call it before the database is opened. It is enabled by
the `COUNT_DB_COMMANDS` setting and read at `GET /v0/debug/db-commands` (`api/debug.py`).

Only commands that go over the wire are counted (MongoDB, nx-27017); an in-process store such as
mongomock-motor sends none. pymongo calls listeners from the threads Motor runs it on, so the
counts are kept under a lock.
"""

from __future__ import annotations

import threading
from collections import Counter

from pymongo import monitoring

__all__ = ["CommandCounter", "command_counter", "install_command_counter"]


class CommandCounter(monitoring.CommandListener):
    """Counts started commands by name (`find`, `insert`, `findAndModify`, `getMore`, ...)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self._lock:
            self._counts[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        """Nothing to do: a command is counted when it starts."""

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        """Nothing to do: a command is counted when it starts."""

    def snapshot(self) -> dict[str, int]:
        """The counts so far, by command name."""
        with self._lock:
            return dict(self._counts)

    def reset(self) -> dict[str, int]:
        """Set every count back to zero; returns the counts as they were (read and reset at once)."""
        with self._lock:
            counts = dict(self._counts)
            self._counts.clear()
            return counts


_installed: CommandCounter | None = None
_install_lock = threading.Lock()


def install_command_counter() -> CommandCounter:
    """Register the process-wide counter with pymongo (once; later calls return the same one).

    Must run before the Motor client is created: clients built earlier do not see it.
    """
    global _installed
    with _install_lock:
        if _installed is None:
            counter = CommandCounter()
            monitoring.register(counter)
            _installed = counter
        return _installed


def command_counter() -> CommandCounter | None:
    """The installed counter, or None when counting is off."""
    return _installed
